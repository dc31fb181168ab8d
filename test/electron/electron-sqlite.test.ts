// scripts/electron-sqlite.mjs: the Electron build of better_sqlite3.node, cached per version, built by
// prebuild-install and else node-gyp, always with argument arrays. The child processes are faked (a
// real build needs Electron's prebuilt binaries or headers from the network).
import { test } from 'vitest';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import {
  ELECTRON_HEADERS_URL,
  buildEnv,
  buildSteps,
  cachedBindingPath,
  ensureElectronSqlite,
  findNodeGyp,
  findPrebuildInstall,
  runFile,
  type Runner,
} from '../../scripts/electron-sqlite.mjs';

const realRoot = path.resolve(import.meta.dirname, '../..');

function fakeRoot(): string {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'strata-sqlite-root-'));
  const pkg = path.join(root, 'node_modules', 'better-sqlite3');
  fs.mkdirSync(path.join(pkg, 'build', 'Release'), { recursive: true });
  fs.mkdirSync(path.join(pkg, 'lib'), { recursive: true });
  fs.writeFileSync(path.join(pkg, 'package.json'), JSON.stringify({ name: 'better-sqlite3', version: '12.4.1' }));
  fs.writeFileSync(path.join(pkg, 'lib', 'index.js'), '');
  fs.writeFileSync(path.join(pkg, 'build', 'Release', 'better_sqlite3.node'), 'NODE-ABI');
  return root;
}

interface Call {
  file: string;
  args: string[];
  cwd?: string;
  env?: Record<string, string>;
  sawNodeBuild: boolean;
  /** where the build really ran (symlinks resolved) */
  cwdReal?: string;
}

/** A runner whose prebuild-install / node-gyp / electron steps succeed or fail as told. */
function fakeRunner(outcome: { prebuild: boolean; gyp: boolean; loads?: boolean }, calls: Call[]): Runner {
  return async (file, args, opts) => {
    const out = opts.cwd ? path.join(opts.cwd, 'build', 'Release', 'better_sqlite3.node') : '';
    calls.push({ file, args, cwd: opts.cwd, env: opts.env, sawNodeBuild: Boolean(opts.cwd) && fs.existsSync(out), cwdReal: opts.cwd && fs.realpathSync(opts.cwd) });
    const label = args[0] === '-e' ? 'electron' : args[0].includes('prebuild') ? 'prebuild' : 'gyp';
    if (label === 'electron') return outcome.loads === false ? { ok: false, output: 'Error: NODE_MODULE_VERSION 115 vs 139' } : { ok: true, output: '' };
    const ok = label === 'prebuild' ? outcome.prebuild : outcome.gyp;
    if (!ok) return { ok: false, output: `${label}: 404 Not Found\n` };
    fs.mkdirSync(path.dirname(out), { recursive: true });
    fs.writeFileSync(out, `ELECTRON-ABI from ${label}`);
    return { ok: true, output: '' };
  };
}

const base = { electronVersion: '38.2.0', platform: 'linux', arch: 'x64', execPath: '/usr/bin/node', prebuildInstall: '/nm/prebuild-install/bin.js', nodeGyp: '/gyp/bin/node-gyp.js' };

test('cache path names better-sqlite3 and Electron versions, platform and arch', () => {
  assert.equal(
    cachedBindingPath({ root: '/p', sqlite: '12.4.1', electronVersion: '38.2.0', platform: 'linux', arch: 'x64' }),
    path.join('/p', 'node_modules', '.cache', 'strata', 'better-sqlite3-12.4.1-electron-38.2.0-linux-x64.node'),
  );
});

test('build steps: prebuild-install for Electron, then node-gyp against Electron headers; node runs them (no shell, no npx)', () => {
  const steps = buildSteps(base);
  assert.deepEqual(steps, [
    { label: 'prebuild-install', file: '/usr/bin/node', args: ['/nm/prebuild-install/bin.js', '--runtime=electron', '--target=38.2.0', '--arch=x64', '--platform=linux', '--verbose'] },
    {
      label: 'node-gyp',
      file: '/usr/bin/node',
      args: ['/gyp/bin/node-gyp.js', 'rebuild', '--release', '--runtime=electron', '--target=38.2.0', '--arch=x64', `--dist-url=${ELECTRON_HEADERS_URL}`],
    },
  ]);
  assert.equal(ELECTRON_HEADERS_URL, 'https://electronjs.org/headers');
  assert.deepEqual(buildSteps({ ...base, prebuildInstall: null }).map((s) => s.label), ['node-gyp']);
  assert.deepEqual(buildSteps({ ...base, prebuildInstall: null, nodeGyp: null }), []);
});

test('the installed prebuild-install and node-gyp are found', () => {
  const pi = findPrebuildInstall({ root: realRoot });
  assert.ok(pi && fs.existsSync(pi), `prebuild-install: ${pi}`);
  const gyp = findNodeGyp({ root: realRoot });
  assert.ok(gyp && fs.existsSync(gyp), `node-gyp: ${gyp}`);
  assert.equal(findPrebuildInstall({ root: '/nonexistent' }), null);
  // outside a project, npm's own node-gyp
  assert.equal(findNodeGyp({ root: '/nonexistent', execPath: '/opt/node/bin/node', env: {}, exists: (p) => p === '/opt/node/lib/node_modules/npm/node_modules/node-gyp/bin/node-gyp.js' }), '/opt/node/lib/node_modules/npm/node_modules/node-gyp/bin/node-gyp.js');
  assert.equal(findNodeGyp({ root: '/nonexistent', execPath: '/x/node', env: {}, exists: () => false }), null);
});

test('npm target settings (nodedir, runtime, target, ...) and ELECTRON_RUN_AS_NODE do not reach the build', () => {
  const env = buildEnv({ PATH: '/bin', npm_config_nodedir: '/usr/include/node', npm_config_target: '20.0.0', npm_config_runtime: 'node', npm_config_disturl: 'x', ELECTRON_RUN_AS_NODE: '1', npm_config_cache: '/c', HOME: '/h', UNSET: undefined });
  assert.deepEqual(env, { PATH: '/bin', npm_config_cache: '/c', HOME: '/h' });
});

test('prebuild-install succeeds: copied into the cache from a fresh copy of the package; a second call reuses it', async () => {
  const root = fakeRoot();
  try {
    const calls: Call[] = [];
    const logs: string[] = [];
    const r = await ensureElectronSqlite({ ...base, root, electronPath: '/e/electron', run: fakeRunner({ prebuild: true, gyp: true }, calls), log: (l) => logs.push(l), env: { PATH: '/bin', npm_config_nodedir: '/x' } });
    assert.equal(r.built, true);
    assert.equal(r.path, cachedBindingPath({ root, sqlite: '12.4.1', electronVersion: '38.2.0', platform: 'linux', arch: 'x64' }));
    assert.equal(fs.readFileSync(r.path, 'utf8'), 'ELECTRON-ABI from prebuild');
    assert.equal(calls.length, 2, 'prebuild-install, then the load check in Electron');
    assert.equal(calls[0].file, '/usr/bin/node');
    assert.ok(Array.isArray(calls[0].args));
    assert.ok(calls[0].cwd && !calls[0].cwd.startsWith(root), 'built in a temporary copy, not in node_modules');
    assert.equal(calls[0].sawNodeBuild, false, 'the Node build is not copied along');
    assert.equal(calls[0].env?.npm_config_nodedir, undefined);
    assert.equal(fs.existsSync(calls[0].cwd!), false, 'temporary copy removed');
    assert.equal(calls[1].file, '/e/electron');
    assert.equal(calls[1].args[0], '-e');
    assert.equal(calls[1].env?.ELECTRON_RUN_AS_NODE, '1');
    assert.equal(fs.readFileSync(path.join(root, 'node_modules', 'better-sqlite3', 'build', 'Release', 'better_sqlite3.node'), 'utf8'), 'NODE-ABI', "Node's own build untouched");
    assert.ok(logs.some((l) => /once/.test(l)));

    const again: Call[] = [];
    const r2 = await ensureElectronSqlite({ ...base, root, run: fakeRunner({ prebuild: false, gyp: false }, again) });
    assert.deepEqual(r2, { path: r.path, built: false });
    assert.equal(again.length, 0);
  } finally {
    fs.rmSync(root, { recursive: true, force: true });
  }
});

test('a symlinked node_modules/better-sqlite3 (pnpm, npm link) is copied, never built in place', async () => {
  const root = fakeRoot();
  const elsewhere = fs.mkdtempSync(path.join(os.tmpdir(), 'strata-sqlite-store-'));
  try {
    const linked = path.join(root, 'node_modules', 'better-sqlite3');
    const real = path.join(elsewhere, 'better-sqlite3');
    fs.renameSync(linked, real);
    fs.symlinkSync(real, linked, 'dir');
    const calls: Call[] = [];
    const r = await ensureElectronSqlite({ ...base, root, run: fakeRunner({ prebuild: false, gyp: true }, calls) });
    assert.equal(fs.readFileSync(r.path, 'utf8'), 'ELECTRON-ABI from gyp');
    for (const c of calls) {
      assert.ok(!c.cwdReal!.startsWith(fs.realpathSync(elsewhere)), `built outside the real package (${c.cwdReal})`);
      assert.equal(c.sawNodeBuild, false);
    }
    assert.equal(fs.readFileSync(path.join(real, 'build', 'Release', 'better_sqlite3.node'), 'utf8'), 'NODE-ABI', "the linked package's Node build is untouched");
  } finally {
    fs.rmSync(root, { recursive: true, force: true });
    fs.rmSync(elsewhere, { recursive: true, force: true });
  }
});

test('prebuild-install fails: node-gyp builds it', async () => {
  const root = fakeRoot();
  try {
    const calls: Call[] = [];
    const r = await ensureElectronSqlite({ ...base, root, run: fakeRunner({ prebuild: false, gyp: true }, calls) });
    assert.equal(fs.readFileSync(r.path, 'utf8'), 'ELECTRON-ABI from gyp');
    assert.deepEqual(calls.map((c) => c.args[1]), ['--runtime=electron', 'rebuild']);
    assert.equal(calls[1].sawNodeBuild, false, 'the failed attempt leaves nothing behind for the next');
  } finally {
    fs.rmSync(root, { recursive: true, force: true });
  }
});

test('both fail: a clear error naming each attempt, nothing cached', async () => {
  const root = fakeRoot();
  try {
    await assert.rejects(
      ensureElectronSqlite({ ...base, root, run: fakeRunner({ prebuild: false, gyp: false }, []) }),
      (e: Error) => {
        assert.match(e.message, /could not build better-sqlite3 for Electron 38\.2\.0/);
        assert.match(e.message, /prebuild-install failed:\s+prebuild: 404 Not Found/);
        assert.match(e.message, /node-gyp failed:\s+gyp: 404 Not Found/);
        return true;
      },
    );
    assert.equal(fs.existsSync(path.join(root, 'node_modules', '.cache', 'strata')), false);
  } finally {
    fs.rmSync(root, { recursive: true, force: true });
  }
});

test('a binary that does not load in Electron is not cached', async () => {
  const root = fakeRoot();
  try {
    await assert.rejects(ensureElectronSqlite({ ...base, root, electronPath: '/e/electron', run: fakeRunner({ prebuild: true, gyp: true, loads: false }, []) }), /does not load in Electron 38\.2\.0: Error: NODE_MODULE_VERSION/);
    assert.equal(fs.existsSync(cachedBindingPath({ root, sqlite: '12.4.1', ...base })), false);
  } finally {
    fs.rmSync(root, { recursive: true, force: true });
  }
});

test('missing package or tools: said plainly', async () => {
  const empty = fs.mkdtempSync(path.join(os.tmpdir(), 'strata-sqlite-empty-'));
  try {
    await assert.rejects(ensureElectronSqlite({ ...base, root: empty }), /node_modules\/better-sqlite3 is missing/);
  } finally {
    fs.rmSync(empty, { recursive: true, force: true });
  }
  const root = fakeRoot();
  try {
    await assert.rejects(ensureElectronSqlite({ ...base, root, prebuildInstall: null, nodeGyp: null }), /neither prebuild-install nor node-gyp/);
  } finally {
    fs.rmSync(root, { recursive: true, force: true });
  }
});

test('runFile passes arguments verbatim (no shell interprets them)', async () => {
  const tricky = '$(touch /tmp/strata-pwned); `id` && echo "x" | cat > y';
  const r = await runFile(process.execPath, ['-e', 'process.stdout.write(process.argv[1])', tricky], {});
  assert.deepEqual(r, { ok: true, output: tricky });
  const bad = await runFile(process.execPath, ['-e', 'process.stderr.write("nope"); process.exit(3)'], {});
  assert.deepEqual(bad, { ok: false, output: 'nope' });
  const missing = await runFile('/nonexistent/binary', [], {});
  assert.equal(missing.ok, false);
  assert.match(missing.output, /ENOENT/);
});
