// `npm start`: the desktop app when Electron can run here, browser mode otherwise (one line says why).
// `npm start -- --web` / `npm run web`: browser mode directly. Extra arguments go to the app.
//
// Decision logic: scripts/launch-plan.mjs. better-sqlite3 for Electron: scripts/electron-sqlite.mjs.
// STRATA_ELECTRON=0 forces browser mode (used by the tests on machines that do have Electron).
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { BINDING_ENV, ensureElectronSqlite } from './electron-sqlite.mjs';
import { READY_MARKER, STARTUP_WINDOW_MS, earlyExitReason, fallbackLine, hasDisplay, planLaunch } from './launch-plan.mjs';

const root = path.resolve(import.meta.dirname, '..');
const dist = path.join(root, 'dist');
const BUILD_OUTPUTS = ['electron/main.cjs', 'electron/preload.cjs', 'renderer/index.html', 'web.mjs'];

const argv = process.argv.slice(2);
const webFlag = argv.includes('--web');
const appArgs = argv.filter((a) => a !== '--web');

function say(line) {
  process.stdout.write(`${line}\n`);
}

function ensureBuilt() {
  const missing = BUILD_OUTPUTS.filter((f) => !fs.existsSync(path.join(dist, f)));
  if (missing.length === 0) return;
  say(`dist/ is incomplete (missing ${missing.join(', ')}); building first...`);
  const r = spawnSync(process.execPath, [path.join(root, 'scripts', 'build.mjs')], { cwd: root, stdio: 'inherit' });
  const still = BUILD_OUTPUTS.filter((f) => !fs.existsSync(path.join(dist, f)));
  if (r.status !== 0 || still.length) {
    console.error(`strata: the build failed${still.length ? ` (still missing dist/${still.join(', dist/')})` : ''}; run \`npm run build\` to see why.`);
    process.exit(1);
  }
}

function electronFacts() {
  const req = createRequire(path.join(root, 'package.json'));
  let pkg;
  try {
    pkg = req.resolve('electron/package.json');
  } catch {
    return { electronInstalled: false, electronPath: null, binaryExists: false, version: null };
  }
  const version = JSON.parse(fs.readFileSync(pkg, 'utf8')).version;
  let p;
  try {
    p = req('electron'); // from Node, the electron package exports the path of its binary
  } catch (e) {
    return { electronInstalled: true, electronPath: null, electronError: e?.message ?? String(e), binaryExists: false, version };
  }
  if (typeof p !== 'string') return { electronInstalled: true, electronPath: null, electronError: 'it did not name a binary', binaryExists: false, version };
  return { electronInstalled: true, electronPath: p, binaryExists: fs.existsSync(p), version };
}

const SIGNALS = ['SIGINT', 'SIGTERM', 'SIGHUP'];

/** Passes Ctrl-C / termination on to the child; returns the function that stops doing so. */
function forwardSignals(child) {
  const forward = (sig) => {
    if (child.exitCode === null && child.signalCode === null) child.kill(sig);
  };
  for (const sig of SIGNALS) process.on(sig, forward);
  return () => {
    for (const sig of SIGNALS) process.off(sig, forward);
  };
}

/** Runs a child to the end and exits with its status. */
function follow(child) {
  forwardSignals(child);
  child.on('exit', (code, signal) => process.exit(code ?? (signal ? 1 : 0)));
}

function startWeb(reason) {
  if (reason) say(fallbackLine(reason));
  const child = spawn(process.execPath, [path.join(dist, 'web.mjs'), ...appArgs], { cwd: root, stdio: 'inherit', env: process.env });
  child.on('error', (e) => {
    console.error(`strata: could not start browser mode: ${e.message}`);
    process.exit(1);
  });
  follow(child);
}

/** Resolves 'running' once the window is up (or the start window passed), or { failed: reason }, or 'exited' (clean early exit). */
function startElectron(electronPath, binding) {
  const env = { ...process.env, STRATA_LAUNCHER: '1', [BINDING_ENV]: binding };
  delete env.ELECTRON_RUN_AS_NODE; // would make the binary a plain Node
  const child = spawn(electronPath, [root, ...appArgs], { cwd: root, env, stdio: ['inherit', 'pipe', 'pipe'] });
  const unforward = forwardSignals(child);
  let stderr = '';
  let settled = null;
  return new Promise((resolve) => {
    const settle = (v) => {
      if (settled) return;
      settled = v;
      clearTimeout(timer);
      if (v !== 'running') unforward();
      resolve(v);
    };
    const timer = setTimeout(() => settle('running'), STARTUP_WINDOW_MS);
    let pending = '';
    child.stdout.on('data', (buf) => {
      pending += buf.toString();
      let i;
      while ((i = pending.indexOf('\n')) >= 0) {
        const line = pending.slice(0, i);
        pending = pending.slice(i + 1);
        if (line.trim() === READY_MARKER) settle('running');
        else process.stdout.write(`${line}\n`);
      }
    });
    child.stderr.on('data', (buf) => {
      const s = buf.toString();
      process.stderr.write(s);
      if (!settled) stderr = (stderr + s).slice(-8192);
    });
    child.on('error', (e) => settle({ failed: `Electron could not be started: ${e.message}` }));
    child.on('exit', (code, signal) => {
      if (settled === 'running') return process.exit(code ?? (signal ? 1 : 0));
      if (settled) return;
      const reason = earlyExitReason(code, signal, stderr);
      settle(reason ? { failed: reason } : 'exited');
    });
  });
}

async function main() {
  ensureBuilt();
  const facts = electronFacts();
  const plan = planLaunch({
    webFlag,
    electronDisabled: process.env.STRATA_ELECTRON === '0',
    electronInstalled: facts.electronInstalled,
    electronPath: facts.electronPath,
    electronError: facts.electronError,
    binaryExists: facts.binaryExists,
    display: hasDisplay(process.env, process.platform),
    platform: process.platform,
  });
  if (plan.mode === 'web') return startWeb(plan.reason);

  let binding;
  try {
    binding = (await ensureElectronSqlite({ root, electronVersion: facts.version, electronPath: facts.electronPath, log: say })).path;
  } catch (e) {
    console.error(`strata: ${e.message}`);
    return startWeb(`better-sqlite3 could not be built for Electron ${facts.version}; see the error above`);
  }
  const outcome = await startElectron(facts.electronPath, binding);
  if (outcome === 'exited') process.exit(0);
  if (outcome !== 'running') return startWeb(outcome.failed);
}

main().catch((e) => {
  console.error(`strata: ${e?.stack ?? e}`);
  process.exit(1);
});
