// The built main process (dist/electron/main.cjs, as the lead's build produces it) boots under a fake
// Electron in a child Node: bundling problems (CJS interop, import.meta, externals, paths relative to
// the bundle) show up here rather than only on a machine with a real Electron.
import { test } from 'vitest';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { CHANNELS } from '../../electron/core/contract.ts';
import { CONTENT_SECURITY_POLICY } from '../../electron/security.ts';

const root = path.resolve(import.meta.dirname, '../..');
const mainCjs = path.join(root, 'dist', 'electron', 'main.cjs');

test('dist/electron/main.cjs boots, registers every channel, opens the hardened window, answers app:info', () => {
  assert.ok(fs.existsSync(mainCjs), 'dist/electron/main.cjs not built (npm run build)');
  const home = fs.mkdtempSync(path.join(os.tmpdir(), 'strata-main-bundle-'));
  try {
    const env: NodeJS.ProcessEnv = { ...process.env, STRATA_HOME: home };
    delete env.STRATA_SQLITE_BINDING;
    delete env.STRATA_LAUNCHER;
    const stdout = execFileSync(process.execPath, ['--import', 'tsx', path.join(import.meta.dirname, 'run-main-bundle.ts'), mainCjs], {
      cwd: root,
      env,
      encoding: 'utf8',
      timeout: 60_000,
    });
    const line = stdout.trim().split('\n').at(-1)!;
    const r = JSON.parse(line);
    assert.equal(r.exitCode, null, `exited: ${JSON.stringify(r.errorBoxes)}`);
    assert.deepEqual(r.channels, [...CHANNELS].sort());
    assert.equal(r.windows.length, 1);
    const w = r.windows[0];
    assert.equal(w.webPreferences.contextIsolation, true);
    assert.equal(w.webPreferences.sandbox, true);
    assert.equal(w.webPreferences.nodeIntegration, false);
    assert.equal(w.webPreferences.preload, path.join(root, 'dist', 'electron', 'preload.cjs'));
    assert.equal(w.loaded, path.join(root, 'dist', 'renderer', 'index.html'));
    assert.equal(r.info.ok, true, JSON.stringify(r.info));
    assert.equal(r.info.result.mode, 'electron');
    assert.equal(r.info.result.dataDir, home);
    assert.match(r.info.result.version, /^\d+\.\d+\.\d+/);
    assert.equal(r.foreign.ok, false);
    assert.deepEqual(r.csp['Content-Security-Policy'], [CONTENT_SECURITY_POLICY]);
    assert.ok(fs.existsSync(path.join(home, 'strata.db')), 'history database created in STRATA_HOME');
  } finally {
    fs.rmSync(home, { recursive: true, force: true });
  }
});
