// IPC: every channel registered, routed through dispatch, foreign senders refused, events forwarded.
import { test } from 'vitest';
import assert from 'node:assert/strict';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { CHANNELS, EVENTS } from '../../electron/core/contract.ts';
import { StrataError } from '../../electron/core/errors.ts';
import type { Handlers, Service, EventListener } from '../../electron/core/service.ts';
import { forwardEvents, isTrustedSender, registerIpc } from '../../electron/ipc.ts';
import { FakeIpcMain, FakeWebContents, frame } from './fake-electron.ts';

const indexHtml = path.resolve(import.meta.dirname, '../../dist/renderer/index.html');
const OWN = pathToFileURL(indexHtml).href;

interface FakeService extends Service {
  calls: { channel: string; arg: unknown }[];
  emit: EventListener;
  listenerCount(): number;
}

function fakeService(overrides: Partial<Record<string, (arg: unknown) => unknown>> = {}): FakeService {
  const calls: { channel: string; arg: unknown }[] = [];
  const listeners = new Set<EventListener>();
  const handlers = Object.fromEntries(
    CHANNELS.map((c) => [
      c,
      (arg: unknown) => {
        calls.push({ channel: c, arg });
        const o = overrides[c];
        return o ? o(arg) : { echo: c };
      },
    ]),
  ) as unknown as Handlers;
  return {
    handlers,
    calls,
    subscribe(l) {
      listeners.add(l);
      return () => listeners.delete(l);
    },
    async close() {},
    emit: ((event, payload) => {
      for (const l of listeners) l(event, payload);
    }) as EventListener,
    listenerCount: () => listeners.size,
  };
}

test('every contract channel is registered with ipcMain.handle, and only those', () => {
  const ipc = new FakeIpcMain();
  registerIpc(ipc, fakeService(), { indexHtml });
  assert.deepEqual([...ipc.handlers.keys()].sort(), [...CHANNELS].sort());
});

test('each channel reaches its own handler through dispatch and answers {ok, result}', async () => {
  const ipc = new FakeIpcMain();
  const svc = fakeService();
  registerIpc(ipc, svc, { indexHtml });
  for (const c of CHANNELS) {
    const arg = { path: `/img/${c}.qcow2` };
    assert.deepEqual(await ipc.invoke(c, frame(OWN), arg), { ok: true, result: { echo: c } });
    assert.deepEqual(svc.calls.at(-1), { channel: c, arg });
  }
  assert.equal(svc.calls.length, CHANNELS.length);
});

test('a void result crosses as null (dispatch), not undefined', async () => {
  const ipc = new FakeIpcMain();
  registerIpc(ipc, fakeService({ 'workspace:remove': () => undefined }), { indexHtml });
  assert.deepEqual(await ipc.invoke('workspace:remove', frame(OWN), { path: '/a' }), { ok: true, result: null });
});

test('a thrown StrataError becomes {ok:false, error:{code, message}} (no class crosses IPC)', async () => {
  const ipc = new FakeIpcMain();
  registerIpc(ipc, fakeService({ 'chain:inspect': () => { throw new StrataError('E_NOT_FOUND', '/img/x.qcow2: no such file', { file: '/img/x.qcow2' }); } }), { indexHtml });
  const r = await ipc.invoke('chain:inspect', frame(OWN), { path: '/img/x.qcow2' });
  assert.deepEqual(r, { ok: false, error: { code: 'E_NOT_FOUND', message: '/img/x.qcow2: no such file' } });
  assert.deepEqual(Object.keys((r as { error: object }).error).sort(), ['code', 'message']);
});

test('a rejected promise and a plain Error become E_INTERNAL replies', async () => {
  const ipc = new FakeIpcMain();
  registerIpc(ipc, fakeService({ 'demo:create': () => Promise.reject(new Error('disk full')), 'app:info': () => { throw new TypeError('boom'); } }), { indexHtml });
  assert.deepEqual(await ipc.invoke('demo:create', frame(OWN)), { ok: false, error: { code: 'E_INTERNAL', message: 'disk full' } });
  assert.deepEqual(await ipc.invoke('app:info', frame(OWN)), { ok: false, error: { code: 'E_INTERNAL', message: 'boom' } });
});

test('a foreign senderFrame is refused without reaching the service', async () => {
  const ipc = new FakeIpcMain();
  const svc = fakeService();
  const logs: string[] = [];
  registerIpc(ipc, svc, { indexHtml, log: (m) => logs.push(m) });
  const foreign = [
    frame('https://evil.example/'),
    frame('http://127.0.0.1:5173/'),
    frame('file:///tmp/evil.html'),
    frame(pathToFileURL(path.join(path.dirname(indexHtml), 'other.html')).href),
    frame(OWN, { url: 'https://evil.example/', parent: null }), // our page, but inside someone's frame
    { senderFrame: null },
  ];
  for (const ev of foreign) {
    const r = (await ipc.invoke('workspace:add', ev, { path: '/etc/passwd' })) as { ok: boolean; error: { code: string; message: string } };
    assert.equal(r.ok, false);
    assert.equal(r.error.code, 'E_BAD_INPUT');
    assert.match(r.error.message, /refused/);
  }
  assert.equal(svc.calls.length, 0, 'no handler ran');
  assert.equal(logs.length, foreign.length);
});

test('isTrustedSender: our own top frame only', () => {
  assert.equal(isTrustedSender(frame(OWN + '#/chain'), indexHtml), true);
  assert.equal(isTrustedSender(frame('https://evil.example/'), indexHtml), false);
  assert.equal(isTrustedSender({ senderFrame: null }, indexHtml), false);
  assert.equal(isTrustedSender(undefined as never, indexHtml), false);
});

test('unregister removes every handler', () => {
  const ipc = new FakeIpcMain();
  const off = registerIpc(ipc, fakeService(), { indexHtml });
  off();
  assert.equal(ipc.handlers.size, 0);
});

test('service events are forwarded to the window with webContents.send(event, payload)', () => {
  const svc = fakeService();
  const wc = new FakeWebContents();
  const off = forwardEvents(svc, () => wc);
  const scan = { id: 1, image: '/a.qcow2', scannedAt: 'now', layers: [], first: true, drift: [], changes: [], health: null };
  svc.emit('chain:scanned', scan);
  svc.emit('workspace:changed', []);
  svc.emit('demo:progress', { step: 'x', done: 1, total: 2 });
  assert.deepEqual(wc.sent, [
    { channel: 'chain:scanned', args: [scan] },
    { channel: 'workspace:changed', args: [[]] },
    { channel: 'demo:progress', args: [{ step: 'x', done: 1, total: 2 }] },
  ]);
  // Every event of the contract goes through, whatever its payload.
  for (const e of EVENTS) if (!wc.sent.some((s) => s.channel === e)) svc.emit(e, { probe: e } as never);
  assert.deepEqual(new Set(wc.sent.map((s) => s.channel)), new Set(EVENTS));
  const sent = wc.sent.length;
  off();
  assert.equal(svc.listenerCount(), 0);
  svc.emit('workspace:changed', []);
  assert.equal(wc.sent.length, sent);
});

test('no send to a destroyed or absent window, and no unknown event names', () => {
  const svc = fakeService();
  const wc = new FakeWebContents();
  let target: FakeWebContents | null = null;
  forwardEvents(svc, () => target);
  svc.emit('workspace:changed', []); // no window
  target = wc;
  wc.destroyed = true;
  svc.emit('workspace:changed', []);
  wc.destroyed = false;
  (svc.emit as (e: string, p: unknown) => void)('internal:secret', { x: 1 });
  assert.equal(wc.sent.length, 0);
});
