// better-sqlite3 for Electron. node_modules/better-sqlite3 is built for Node's ABI, which Electron
// cannot load, so `npm start` keeps a second copy of better_sqlite3.node built for the installed
// Electron in node_modules/.cache/strata/ and hands its path to the main process (STRATA_SQLITE_BINDING).
// Building it: copy the package to a temporary directory and there run prebuild-install for
// Electron (downloads the matching prebuilt binary), else node-gyp against Electron's headers.
// Every child process gets an argument array (no shell).
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';

export const BINDING_ENV = 'STRATA_SQLITE_BINDING';
export const ELECTRON_HEADERS_URL = 'https://electronjs.org/headers';

// npm passes its config to scripts as npm_config_* variables; these would make prebuild-install or
// node-gyp build for Node (a user's `nodedir`, `target`, ...) instead of the Electron we ask for.
const TARGET_VARS = /^npm_config_(nodedir|target|target_arch|arch|runtime|disturl|dist_url|build_from_source|platform)$/i;

export function buildEnv(env) {
  const out = {};
  for (const [k, v] of Object.entries(env)) if (v !== undefined && !TARGET_VARS.test(k) && k !== 'ELECTRON_RUN_AS_NODE') out[k] = v;
  return out;
}

export function sqliteVersion(root) {
  return JSON.parse(fs.readFileSync(path.join(root, 'node_modules', 'better-sqlite3', 'package.json'), 'utf8')).version;
}

/** Where the Electron build of better_sqlite3.node is kept. */
export function cachedBindingPath({ root, sqlite, electronVersion, platform, arch }) {
  return path.join(root, 'node_modules', '.cache', 'strata', `better-sqlite3-${sqlite}-electron-${electronVersion}-${platform}-${arch}.node`);
}

/** node-gyp: the project's own, else the one bundled with npm. */
export function findNodeGyp({ root, execPath = process.execPath, env = process.env, exists = fs.existsSync }) {
  try {
    return createRequire(path.join(root, 'package.json')).resolve('node-gyp/bin/node-gyp.js');
  } catch {
    // not a dependency of the project
  }
  const candidates = [];
  if (env.npm_execpath) candidates.push(path.join(path.dirname(path.dirname(env.npm_execpath)), 'node_modules', 'node-gyp', 'bin', 'node-gyp.js'));
  const bin = path.dirname(execPath);
  candidates.push(path.join(bin, '..', 'lib', 'node_modules', 'npm', 'node_modules', 'node-gyp', 'bin', 'node-gyp.js'));
  candidates.push(path.join(bin, 'node_modules', 'npm', 'node_modules', 'node-gyp', 'bin', 'node-gyp.js'));
  return candidates.find((c) => exists(c)) ?? null;
}

export function findPrebuildInstall({ root }) {
  try {
    // from better-sqlite3's real location, where its own dependencies are (pnpm keeps them beside it)
    const pkg = fs.realpathSync(path.join(root, 'node_modules', 'better-sqlite3', 'package.json'));
    return createRequire(pkg).resolve('prebuild-install/bin.js');
  } catch {
    return null;
  }
}

/** The two ways to get the binary, in order. Each is { label, file, args } for execFile. */
export function buildSteps({ electronVersion, platform, arch, execPath, prebuildInstall, nodeGyp }) {
  const steps = [];
  if (prebuildInstall) {
    steps.push({
      label: 'prebuild-install',
      file: execPath,
      args: [prebuildInstall, '--runtime=electron', `--target=${electronVersion}`, `--arch=${arch}`, `--platform=${platform}`, '--verbose'],
    });
  }
  if (nodeGyp) {
    steps.push({
      label: 'node-gyp',
      file: execPath,
      args: [nodeGyp, 'rebuild', '--release', '--runtime=electron', `--target=${electronVersion}`, `--arch=${arch}`, `--dist-url=${ELECTRON_HEADERS_URL}`],
    });
  }
  return steps;
}

/** execFile with an argument array; resolves { ok, output } and never rejects. */
export function runFile(file, args, opts) {
  return new Promise((resolve) => {
    execFile(file, args, { ...opts, shell: false, windowsHide: true, maxBuffer: 64 * 1024 * 1024 }, (err, stdout, stderr) => {
      const output = `${stdout ?? ''}${stderr ?? ''}`;
      resolve({ ok: !err, output: err && !output.trim() ? String(err.message) : output });
    });
  });
}

function tail(s, n = 6) {
  return String(s).split('\n').map((l) => l.trimEnd()).filter(Boolean).slice(-n).join('\n    ');
}

/**
 * Returns the path of better_sqlite3.node for this Electron, building it if missing.
 * Throws an Error whose message says what was tried and why it failed.
 * @param {object} o
 * @param {string} o.root          project directory
 * @param {string} o.electronVersion
 * @param {string} [o.electronPath] the Electron binary, to check that the fresh build loads in it
 * @param {string} [o.platform] @param {string} [o.arch]
 * @param {(file: string, args: string[], opts: object) => Promise<{ok: boolean, output: string}>} [o.run]
 * @param {(line: string) => void} [o.log]
 * @param {Record<string, string|undefined>} [o.env]
 */
export async function ensureElectronSqlite(o) {
  const platform = o.platform ?? process.platform;
  const arch = o.arch ?? process.arch;
  const run = o.run ?? runFile;
  const log = o.log ?? (() => {});
  const env = buildEnv(o.env ?? process.env);
  const execPath = o.execPath ?? process.execPath;
  const installed = path.join(o.root, 'node_modules', 'better-sqlite3');
  if (!fs.existsSync(path.join(installed, 'package.json'))) throw new Error('node_modules/better-sqlite3 is missing; run `npm install`');
  // The real directory (pnpm, npm link and workspaces install packages as symlinks): the copy below
  // must be a copy, never a link back into node_modules that the build would then overwrite.
  const src = fs.realpathSync(installed);
  const sqlite = sqliteVersion(o.root);
  const target = cachedBindingPath({ root: o.root, sqlite, electronVersion: o.electronVersion, platform, arch });
  if (fs.existsSync(target)) return { path: target, built: false };

  const steps = buildSteps({
    electronVersion: o.electronVersion,
    platform,
    arch,
    execPath,
    prebuildInstall: o.prebuildInstall !== undefined ? o.prebuildInstall : findPrebuildInstall({ root: o.root }),
    nodeGyp: o.nodeGyp !== undefined ? o.nodeGyp : findNodeGyp({ root: o.root, execPath, env }),
  });
  if (steps.length === 0) throw new Error('neither prebuild-install nor node-gyp was found; run `npm install`');

  log(`Preparing better-sqlite3 ${sqlite} for Electron ${o.electronVersion} (${platform}-${arch}); this happens once...`);
  const tmp = fs.mkdtempSync(path.join(o.tmpDir ?? os.tmpdir(), 'strata-sqlite-electron-'));
  const failures = [];
  try {
    const work = path.join(tmp, 'better-sqlite3');
    // The package without its Node build: whatever lands in build/Release is the Electron one.
    fs.cpSync(src, work, { recursive: true, dereference: true, filter: (p) => path.relative(src, p) !== 'build' });
    if (fs.lstatSync(work).isSymbolicLink() || fs.realpathSync(work) === src) throw new Error(`could not make a private copy of ${src}`);
    const built = path.join(work, 'build', 'Release', 'better_sqlite3.node');
    for (const step of steps) {
      fs.rmSync(path.join(work, 'build'), { recursive: true, force: true });
      if (step.label === 'node-gyp') log('No prebuilt binary could be fetched; compiling better-sqlite3 from source against the Electron headers (a few minutes)...');
      const r = await run(step.file, step.args, { cwd: work, env, timeout: 15 * 60_000 });
      if (r.ok && fs.existsSync(built)) {
        const problem = o.electronPath ? await checkLoads({ run, electronPath: o.electronPath, src, binding: built, env }) : null;
        if (problem) {
          failures.push(`${step.label}: the binary it produced does not load in Electron ${o.electronVersion}: ${problem}`);
          continue;
        }
        fs.mkdirSync(path.dirname(target), { recursive: true });
        const partial = `${target}.${process.pid}.partial`;
        fs.copyFileSync(built, partial);
        fs.renameSync(partial, target);
        log(`better-sqlite3 for Electron ${o.electronVersion} is ready (${step.label}): ${path.relative(o.root, target)}`);
        return { path: target, built: true };
      }
      failures.push(`${step.label} failed${r.ok ? ' (no better_sqlite3.node produced)' : ''}:\n    ${tail(r.output)}`);
    }
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
  throw new Error(`could not build better-sqlite3 for Electron ${o.electronVersion}:\n  ${failures.join('\n  ')}`);
}

/** Opens an in-memory database with the new binary inside Electron running as Node. Returns the problem or null. */
async function checkLoads({ run, electronPath, src, binding, env }) {
  const script = `const D = require(${JSON.stringify(src)}); const db = new D(':memory:', { nativeBinding: ${JSON.stringify(binding)} }); db.prepare('select 1').get(); db.close();`;
  const r = await run(electronPath, ['-e', script], { env: { ...env, ELECTRON_RUN_AS_NODE: '1' }, timeout: 60_000 });
  return r.ok ? null : tail(r.output, 3) || 'it exited with an error';
}
