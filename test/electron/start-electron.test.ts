// scripts/start.mjs on a machine that does have an electron package, with a stand-in binary: the
// launcher picks the cached Electron build of better-sqlite3, starts `electron <appDir>` with it,
// waits for the window, and falls back to browser mode when Electron dies at start.
// The project is mirrored into a temporary directory (symlinks) so the fake package stays out of
// the real node_modules.
import { test } from 'vitest';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { cachedBindingPath, sqliteVersion } from '../../scripts/electron-sqlite.mjs';
import { CHANNELS } from '../../electron/core/contract.ts';

const root = path.resolve(import.meta.dirname, '../..');
const ELECTRON_VERSION = '38.2.0';
const URL_RE = /http:\/\/127\.0\.0\.1:(\d+)\/\?token=[A-Za-z0-9_-]+/;
const distReady = ['electron/main.cjs', 'electron/preload.cjs', 'renderer/index.html', 'web.mjs'].every((f) => fs.existsSync(path.join(root, 'dist', f)));
// the stand-in binary is a /bin/sh wrapper, and the mirror is made of symlinks: these run where both exist
const posix = process.platform !== 'win32';

/** A copy of the project's shape: scripts/ and package.json copied, dist/ and node_modules/* linked, plus a fake electron. */
function mirror(): string {
  assert.ok(distReady, 'dist/ not built (npm run build)');
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'strata-mirror-'));
  fs.cpSync(path.join(root, 'scripts'), path.join(dir, 'scripts'), { recursive: true });
  fs.copyFileSync(path.join(root, 'package.json'), path.join(dir, 'package.json'));
  fs.symlinkSync(path.join(root, 'dist'), path.join(dir, 'dist'), 'dir');
  const nm = path.join(dir, 'node_modules');
  fs.mkdirSync(nm);
  for (const e of fs.readdirSync(path.join(root, 'node_modules'))) {
    if (e === 'electron' || e === '.cache' || e === '.bin') continue;
    fs.symlinkSync(path.join(root, 'node_modules', e), path.join(nm, e));
  }
  // the electron package as npm installs it: index.js exports the binary's path
  const pkg = path.join(nm, 'electron');
  fs.mkdirSync(path.join(pkg, 'dist'), { recursive: true });
  fs.writeFileSync(path.join(pkg, 'package.json'), JSON.stringify({ name: 'electron', version: ELECTRON_VERSION, main: 'index.js' }));
  fs.writeFileSync(path.join(pkg, 'index.js'), "module.exports = require('path').join(__dirname, 'dist', 'electron');\n");
  const bin = path.join(pkg, 'dist', 'electron');
  const tsx = pathToFileURL(path.join(root, 'node_modules', 'tsx', 'dist', 'loader.mjs')).href;
  fs.writeFileSync(bin, `#!/bin/sh\nexec "${process.execPath}" --import "${tsx}" "${path.join(import.meta.dirname, 'fake-electron-bin.ts')}" "$@"\n`);
  fs.chmodSync(bin, 0o755);
  // the Electron build of better-sqlite3, already in the cache: the stand-in runs on Node, so Node's build is the right one
  const cached = cachedBindingPath({ root: dir, sqlite: sqliteVersion(root), electronVersion: ELECTRON_VERSION, platform: process.platform, arch: process.arch });
  fs.mkdirSync(path.dirname(cached), { recursive: true });
  fs.copyFileSync(path.join(root, 'node_modules', 'better-sqlite3', 'build', 'Release', 'better_sqlite3.node'), cached);
  return dir;
}

interface Outcome {
  code: number | null;
  out: string;
  url: string | null;
}

function launch(dir: string, env: Record<string, string | undefined>, stopOnUrl: boolean): Promise<Outcome> {
  const child = spawn(process.execPath, [path.join(dir, 'scripts', 'start.mjs')], { cwd: dir, env: env as NodeJS.ProcessEnv });
  let out = '';
  let url: string | null = null;
  const onData = (b: Buffer) => {
    out += b;
    const m = URL_RE.exec(out);
    if (m && !url) {
      url = m[0];
      if (stopOnUrl) child.kill('SIGTERM');
    }
  };
  child.stdout.on('data', onData);
  child.stderr.on('data', onData);
  return new Promise((resolve) => {
    const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
    child.on('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, out, url });
    });
  });
}

function env(home: string, extra: Record<string, string>): Record<string, string | undefined> {
  const e: Record<string, string | undefined> = { ...process.env, STRATA_HOME: home, DISPLAY: ':99', ...extra };
  for (const k of ['STRATA_ELECTRON', 'STRATA_SQLITE_BINDING', 'STRATA_LAUNCHER', 'STRATA_PORT', 'WAYLAND_DISPLAY']) if (!(k in extra)) delete e[k];
  return e;
}

test.runIf(posix)('a working Electron: started as `electron <appDir>` with the cached sqlite build; no fallback', { timeout: 90_000 }, async () => {
  const dir = mirror();
  const home = fs.mkdtempSync(path.join(os.tmpdir(), 'strata-home-'));
  try {
    const record = path.join(home, 'record.json');
    const r = await launch(dir, env(home, { FAKE_ELECTRON_MODE: 'ok', FAKE_ELECTRON_RECORD: record, ELECTRON_RUN_AS_NODE: '1' }), false);
    assert.equal(r.code, 0, r.out);
    assert.doesNotMatch(r.out, /Electron is not available/);
    assert.equal(r.url, null, 'no browser mode');
    assert.doesNotMatch(r.out, /strata:window-ready/, 'the marker is consumed, not shown');
    const rec = JSON.parse(fs.readFileSync(record, 'utf8'));
    assert.deepEqual(rec.argv, [dir]);
    assert.equal(rec.binding, cachedBindingPath({ root: dir, sqlite: sqliteVersion(root), electronVersion: ELECTRON_VERSION, platform: process.platform, arch: process.arch }));
    assert.equal(rec.launcher, '1');
    assert.equal(rec.channels, CHANNELS.length);
    assert.equal(rec.webPreferences.sandbox, true);
    assert.ok(fs.existsSync(path.join(home, 'strata.db')), 'the main process opened its database with that binding');
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
    fs.rmSync(home, { recursive: true, force: true });
  }
});

test.runIf(posix)('Electron dies at start: its error line is the reason, and browser mode starts', { timeout: 90_000 }, async () => {
  const dir = mirror();
  const home = fs.mkdtempSync(path.join(os.tmpdir(), 'strata-home-'));
  try {
    const r = await launch(dir, env(home, { FAKE_ELECTRON_MODE: 'crash' }), true);
    assert.ok(r.url, r.out);
    assert.ok(
      r.out.includes(
        'Electron is not available (Electron exited with code 127 at start: /opt/electron/electron: error while loading shared libraries: libnss3.so: cannot open shared object file: No such file or directory); starting browser mode instead.',
      ),
      r.out,
    );
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
    fs.rmSync(home, { recursive: true, force: true });
  }
});

// the display check is for Linux
test.runIf(process.platform === 'linux')('electron installed but no display: browser mode, saying so', { timeout: 90_000 }, async () => {
  const dir = mirror();
  const home = fs.mkdtempSync(path.join(os.tmpdir(), 'strata-home-'));
  try {
    const e = env(home, { FAKE_ELECTRON_MODE: 'ok' });
    delete e.DISPLAY;
    const r = await launch(dir, e, true);
    assert.ok(r.url, r.out);
    assert.ok(r.out.includes('Electron is not available (there is no display: neither DISPLAY nor WAYLAND_DISPLAY is set); starting browser mode instead.'), r.out);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
    fs.rmSync(home, { recursive: true, force: true });
  }
});
