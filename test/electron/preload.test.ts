// The preload: window.strata = { invoke, on, pathForFile } and nothing else; only contract channels
// and events pass; listeners never see the IpcRendererEvent. Also runs the bundled preload the way a
// sandboxed renderer does: a bare context whose require() knows only 'electron'.
import { test } from 'vitest';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import vm from 'node:vm';
import { build } from 'esbuild';
import { CHANNELS, EVENTS } from '../../electron/core/contract.ts';
import { createStrataBridge } from '../../electron/preload-api.ts';
import { fakePreload } from './fake-electron.ts';

const root = path.resolve(import.meta.dirname, '../..');

function bridge() {
  const f = fakePreload();
  return { ...f, api: createStrataBridge(f.ipcRenderer, f.electron.webUtils) };
}

test('the bridge has exactly invoke, on and pathForFile', () => {
  const { api } = bridge();
  assert.deepEqual(Object.keys(api).sort(), ['invoke', 'on', 'pathForFile']);
  for (const k of Object.keys(api)) assert.equal(typeof (api as unknown as Record<string, unknown>)[k], 'function');
});

test('invoke passes every contract channel and its argument to ipcRenderer.invoke and returns its reply', async () => {
  const { api, ipcRenderer } = bridge();
  for (const c of CHANNELS) {
    const reply = await api.invoke(c, { path: '/a' } as never);
    assert.deepEqual(reply, { ok: true, result: 'pong' });
  }
  assert.deepEqual(
    ipcRenderer.invoked.map((i) => i.channel),
    [...CHANNELS],
  );
  assert.deepEqual(ipcRenderer.invoked[0].args, [{ path: '/a' }]);
});

test('invoke refuses an unknown channel without sending anything', async () => {
  const { api, ipcRenderer } = bridge();
  for (const bad of ['fs:read', 'app:info ', '', 'constructor', '__proto__', 42, null]) {
    const r = await api.invoke(bad as never, undefined as never);
    assert.equal(r.ok, false);
    assert.equal(!r.ok && r.error.code, 'E_BAD_INPUT');
  }
  assert.equal(ipcRenderer.invoked.length, 0);
});

test('on: contract events only; the listener gets the payload alone; unsubscribe removes it', () => {
  const { api, ipcRenderer } = bridge();
  const got: unknown[][] = [];
  const off = api.on('workspace:changed', (...args: unknown[]) => got.push(args));
  ipcRenderer.deliver('workspace:changed', [{ path: '/a' }]);
  assert.deepEqual(got, [[[{ path: '/a' }]]], 'exactly one argument, the payload (no IpcRendererEvent)');
  off();
  off(); // twice is harmless
  ipcRenderer.deliver('workspace:changed', []);
  assert.equal(got.length, 1);
  assert.equal(ipcRenderer.listeners.get('workspace:changed')?.length, 0);
  for (const e of EVENTS) {
    const o = api.on(e, () => {});
    assert.equal(ipcRenderer.listeners.get(e)?.length, 1);
    o();
  }
});

test('on refuses unknown events and non-function listeners', () => {
  const { api, ipcRenderer } = bridge();
  assert.throws(() => api.on('ipc:anything' as never, () => {}), /unknown event/);
  assert.throws(() => api.on('chain:scanned', 'x' as never), /listener/);
  assert.equal(ipcRenderer.listeners.size, 0);
});

test('pathForFile goes through webUtils.getPathForFile', () => {
  const { api, pathsAsked } = bridge();
  const file = { name: 'disk.qcow2' };
  assert.equal(api.pathForFile(file as never), '/dropped/disk.qcow2');
  assert.deepEqual(pathsAsked, [file]);
});

/** Runs preload code as a sandboxed preload would: no Node globals, require('electron') only. */
function runSandboxed(code: string) {
  const f = fakePreload();
  const required: string[] = [];
  const sandboxRequire = (id: string) => {
    required.push(id);
    if (id === 'electron') return f.electron;
    throw new Error(`module not found: ${id}`);
  };
  const module = { exports: {} };
  vm.runInNewContext(code, { require: sandboxRequire, module, exports: module.exports, console }, { filename: 'preload.cjs' });
  return { ...f, required };
}

async function bundlePreload(): Promise<string> {
  // the same options as scripts/build.mjs uses for dist/electron/preload.cjs
  const r = await build({
    absWorkingDir: root,
    entryPoints: ['electron/preload.ts'],
    bundle: true,
    format: 'cjs',
    platform: 'browser',
    external: ['electron'],
    write: false,
    logLevel: 'silent',
  });
  return r.outputFiles[0].text;
}

async function checkPreloadCode(code: string) {
  const s = runSandboxed(code);
  assert.deepEqual(s.required, ['electron'], 'requires electron and nothing else');
  assert.deepEqual([...s.exposed.keys()], ['strata']);
  const api = s.exposed.get('strata') as ReturnType<typeof createStrataBridge>;
  assert.deepEqual(Object.keys(api).sort(), ['invoke', 'on', 'pathForFile']);
  assert.deepEqual(await api.invoke('app:info', undefined), { ok: true, result: 'pong' });
  assert.equal((await api.invoke('shell:exec' as never, 'rm -rf /' as never)).ok, false);
  assert.deepEqual(s.ipcRenderer.invoked.map((i) => i.channel), ['app:info']);
  const seen: unknown[] = [];
  api.on('demo:progress', (p) => seen.push(p));
  s.ipcRenderer.deliver('demo:progress', { step: 's', done: 1, total: 1 });
  assert.deepEqual(seen, [{ step: 's', done: 1, total: 1 }]);
}

test('bundled preload (fresh esbuild of electron/preload.ts) runs in a sandbox that only has require("electron")', async () => {
  const code = await bundlePreload();
  assert.doesNotMatch(code, /require\(["'](?!electron["'])/, 'no require of anything but electron');
  await checkPreloadCode(code);
});

test('dist/electron/preload.cjs (the build output) behaves the same', async () => {
  const file = path.join(root, 'dist', 'electron', 'preload.cjs');
  assert.ok(fs.existsSync(file), 'dist/electron/preload.cjs not built (npm run build)');
  await checkPreloadCode(fs.readFileSync(file, 'utf8'));
});
