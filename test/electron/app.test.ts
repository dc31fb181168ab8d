// The app lifecycle (electron/app.ts, what main.ts runs) against a fake Electron: lock, data dir,
// service options, IPC, window, events, quitting, and a failed start.
import { test } from 'vitest';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { CHANNELS } from '../../electron/core/contract.ts';
import { createService, type Service, type ServiceOptions } from '../../electron/core/service.ts';
import { READY_MARKER, dataDirFor, startApp, type StartDeps } from '../../electron/app.ts';
import { READY_MARKER as LAUNCHER_READY_MARKER } from '../../scripts/launch-plan.mjs';
import { fakeMain, frame, type FakeMain } from './fake-electron.ts';

const paths = { preload: '/app/dist/electron/preload.cjs', indexHtml: '/app/dist/renderer/index.html', icon: '/app/resources/icon.png' };
const OWN = pathToFileURL(paths.indexHtml).href;

function stubService(): Service & { closed: number; emit: (e: string, p: unknown) => void } {
  const listeners = new Set<(e: never, p: never) => void>();
  const s = {
    closed: 0,
    handlers: Object.fromEntries(CHANNELS.map((c) => [c, () => ({ channel: c })])) as never,
    subscribe(l: (e: never, p: never) => void) {
      listeners.add(l);
      return () => listeners.delete(l);
    },
    async close() {
      s.closed++;
    },
    emit(e: string, p: unknown) {
      for (const l of listeners) l(e as never, p as never);
    },
  };
  return s;
}

interface Run {
  f: FakeMain;
  started: ReturnType<typeof startApp>;
  serviceOpts: ServiceOptions[];
  service: ReturnType<typeof stubService>;
  logs: string[];
  announced: string[];
}

function run(env: Record<string, string | undefined> = {}, over: Partial<StartDeps> = {}, prep?: (f: FakeMain) => void): Run {
  const f = fakeMain();
  prep?.(f);
  const serviceOpts: ServiceOptions[] = [];
  const service = stubService();
  const logs: string[] = [];
  const announced: string[] = [];
  const started = startApp(f.electron, {
    env,
    platform: 'linux',
    paths,
    createService: (o) => {
      serviceOpts.push(o);
      return service;
    },
    exists: (p) => p === paths.icon || fs.existsSync(p),
    log: (m) => logs.push(m),
    announce: (l) => announced.push(l),
    ...over,
  });
  f.app.fireReady();
  return { f, started, serviceOpts, service, logs, announced };
}

test('data dir: $STRATA_HOME when set (with Chromium profile inside it), else userData', async () => {
  assert.equal(dataDirFor({ STRATA_HOME: 'rel/dir' }, () => '/u'), path.resolve('rel/dir'));
  assert.equal(dataDirFor({}, () => '/u'), '/u');
  assert.equal(dataDirFor({ STRATA_HOME: '' }, () => '/u'), '/u');

  const a = run({ STRATA_HOME: '/tmp/strata-home' });
  const app = await a.started;
  assert.equal(app?.dataDir, '/tmp/strata-home');
  assert.equal(a.f.app.getPath('userData'), path.join('/tmp/strata-home', 'electron-profile'));
  assert.equal(a.serviceOpts[0].dataDir, '/tmp/strata-home');

  const b = run({});
  assert.equal((await b.started)?.dataDir, '/home/u/.config/Strata');
});

test('service is created with mode electron, the native binding from STRATA_SQLITE_BINDING and a file picker', async () => {
  const binding = path.join(os.tmpdir(), `fake-binding-${process.pid}.node`);
  fs.writeFileSync(binding, '');
  try {
    const r = run({ STRATA_SQLITE_BINDING: binding });
    await r.started;
    const o = r.serviceOpts[0];
    assert.equal(o.mode, 'electron');
    assert.equal(o.nativeBinding, binding);
    assert.equal(typeof o.openImageDialog, 'function');
    // the picker is the native dialog, parented to the window, with disk-image filters
    assert.equal(await o.openImageDialog!(), '/images/vm.qcow2');
    const call = r.f.dialog.openCalls[0];
    assert.equal(call.window, r.f.windows[0]);
    assert.deepEqual(call.options.properties.includes('openFile'), true);
    assert.deepEqual(call.options.filters[0].extensions, ['qcow2', 'qcow', 'raw', 'img']);
    r.f.dialog.result = { canceled: true, filePaths: [] };
    assert.equal(await o.openImageDialog!(), null);
  } finally {
    fs.rmSync(binding, { force: true });
  }
  const plain = run({});
  await plain.started;
  assert.equal(plain.serviceOpts[0].nativeBinding, undefined);
});

test('every channel is handled, one hardened window is opened, the session is hardened, a menu is set', async () => {
  const r = run({});
  await r.started;
  assert.deepEqual([...r.f.ipcMain.handlers.keys()].sort(), [...CHANNELS].sort());
  assert.equal(r.f.windows.length, 1);
  const w = r.f.windows[0];
  assert.equal(w.options.webPreferences.sandbox, true);
  assert.equal(w.options.webPreferences.contextIsolation, true);
  assert.equal(w.options.webPreferences.nodeIntegration, false);
  assert.equal(w.options.webPreferences.preload, paths.preload);
  assert.equal(w.options.icon, paths.icon);
  assert.equal(w.loaded, paths.indexHtml);
  assert.ok(r.f.session.headersListener, 'CSP header listener installed');
  assert.equal(r.f.session.request('media'), false);
  assert.ok(r.f.menu.applied, 'application menu set');
  assert.deepEqual(await r.f.ipcMain.invoke('app:info', frame(OWN)), { ok: true, result: { channel: 'app:info' } });
  assert.equal((await r.f.ipcMain.invoke('app:info', frame('https://evil.example/')) as { ok: boolean }).ok, false);
});

test('every webContents created later is guarded too', async () => {
  const r = run({});
  await r.started;
  const { FakeWebContents } = await import('./fake-electron.ts');
  const wc = new FakeWebContents();
  r.f.app.emit('web-contents-created', {}, wc);
  assert.deepEqual(wc.windowOpenHandler?.({ url: 'https://x.example/' }), { action: 'deny' });
  assert.equal(wc.navigate('https://x.example/'), true);
});

test('service events reach the window; none after it closed', async () => {
  const r = run({});
  await r.started;
  const w = r.f.windows[0];
  r.service.emit('workspace:changed', [{ path: '/a' }]);
  assert.deepEqual(w.webContents.sent, [{ channel: 'workspace:changed', args: [[{ path: '/a' }]] }]);
  w.close();
  r.service.emit('workspace:changed', []);
  assert.equal(w.webContents.sent.length, 1);
});

test('second instance: gives way (quit) when the lock is held; the first one focuses its window', async () => {
  const second = run({}, {}, (f) => (f.app.lockGranted = false));
  assert.equal(await second.started, null);
  assert.equal(second.f.app.quitCalls, 1);
  assert.equal(second.serviceOpts.length, 0, 'no service, no database opened');
  assert.equal(second.f.windows.length, 0);

  const first = run({});
  await first.started;
  const w = first.f.windows[0];
  w.minimized = true;
  first.f.app.emit('second-instance');
  assert.equal(w.minimized, false);
  assert.equal(w.focused, 1);
});

test('closing the last window quits (not on macOS); quitting closes the service and the handlers once', async () => {
  const r = run({});
  await r.started;
  r.f.windows[0].close();
  r.f.app.emit('window-all-closed');
  assert.equal(r.f.app.quitCalls, 1);
  assert.equal(r.service.closed, 1);
  assert.equal(r.f.ipcMain.handlers.size, 0);
  r.f.app.emit('will-quit');
  assert.equal(r.service.closed, 1);

  const mac = run({}, { platform: 'darwin' });
  await mac.started;
  mac.f.windows[0].close();
  mac.f.app.emit('window-all-closed');
  assert.equal(mac.f.app.quitCalls, 0);
  mac.f.app.emit('activate');
  assert.equal(mac.f.windows.length, 2, 'dock click reopens a window');
});

test('started by npm start: announces the ready marker once the window is painted', async () => {
  assert.equal(READY_MARKER, LAUNCHER_READY_MARKER, 'main and scripts/start.mjs agree on the marker');
  const r = run({ STRATA_LAUNCHER: '1' });
  await r.started;
  assert.deepEqual(r.announced, []);
  r.f.windows[0].emit('ready-to-show');
  assert.deepEqual(r.announced, [READY_MARKER]);
  const plain = run({});
  await plain.started;
  plain.f.windows[0].emit('ready-to-show');
  assert.deepEqual(plain.announced, []);
});

test('a failed start shows the reason (error box, or stderr only under npm start) and exits 1', async () => {
  const abi = "The module 'better_sqlite3.node' was compiled against a different Node.js version using NODE_MODULE_VERSION 115. This version of Node.js requires NODE_MODULE_VERSION 139.";
  const boom = () => {
    throw new Error(abi);
  };
  const r = run({}, { createService: boom });
  assert.equal(await r.started, null);
  assert.equal(r.f.app.exitCode, 1);
  assert.equal(r.f.dialog.errorBoxes.length, 1);
  assert.match(r.f.dialog.errorBoxes[0].content, /npm start/);
  assert.equal(r.f.windows.length, 0);
  assert.equal(r.f.ipcMain.handlers.size, 0);

  const launched = run({ STRATA_LAUNCHER: '1' }, { createService: boom });
  assert.equal(await launched.started, null);
  assert.equal(launched.f.app.exitCode, 1);
  assert.equal(launched.f.dialog.errorBoxes.length, 0);
  assert.ok(launched.logs.some((l) => l.includes('NODE_MODULE_VERSION')));

  const missing = run({ STRATA_SQLITE_BINDING: '/nowhere/better_sqlite3.node' });
  assert.equal(await missing.started, null);
  assert.match(missing.f.dialog.errorBoxes[0].content, /does not exist/);
});

test('end to end with the real core service: app:info over the IPC handler, events to the window', async () => {
  const home = fs.mkdtempSync(path.join(os.tmpdir(), 'strata-app-test-'));
  try {
    const r = run({ STRATA_HOME: home }, { createService });
    const app = await r.started;
    assert.ok(app);
    const info = (await r.f.ipcMain.invoke('app:info', frame(OWN))) as { ok: true; result: { mode: string; dataDir: string } };
    assert.equal(info.ok, true);
    assert.equal(info.result.mode, 'electron');
    assert.equal(info.result.dataDir, home);
    assert.ok(fs.existsSync(path.join(home, 'strata.db')));
    const bad = (await r.f.ipcMain.invoke('workspace:add', frame(OWN), { path: 'relative.qcow2' })) as { ok: false; error: { code: string } };
    assert.deepEqual(bad.ok, false);
    assert.equal(bad.error.code, 'E_BAD_INPUT');
    const none = (await r.f.ipcMain.invoke('workspace:add', frame(OWN), { path: path.join(home, 'none.qcow2') })) as { ok: false; error: { code: string } };
    assert.equal(none.error.code, 'E_NOT_FOUND');
    const list = await r.f.ipcMain.invoke('workspace:list', frame(OWN));
    assert.deepEqual(list, { ok: true, result: [] });
    await r.f.ipcMain.invoke('workspace:remove', frame(OWN), { path: path.join(home, 'none.qcow2') });
    assert.deepEqual(r.f.windows[0].webContents.sent.map((s) => s.channel), ['workspace:changed']);
    r.f.app.quit();
  } finally {
    fs.rmSync(home, { recursive: true, force: true });
  }
});
