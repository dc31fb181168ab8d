// Browser mode's door: 127.0.0.1 only, the token, our Origin and Host; the contract over WebSocket.
import { test } from 'vitest';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import WebSocket from 'ws';
import { createService } from '../../electron/core/service.ts';
import { startBrowserServer } from '../../electron/core/server/browser-server.ts';
import { tempDir, type Cleanup } from '../helpers/qemu.ts';
import { buildSeed } from './seed-chain.ts';

async function setup(t: Cleanup) {
  const dir = tempDir(t);
  const staticDir = path.join(dir, 'static');
  fs.mkdirSync(staticDir);
  fs.writeFileSync(path.join(staticDir, 'index.html'), '<!doctype html><title>x</title>');
  fs.writeFileSync(path.join(dir, 'secret.txt'), 'secret');
  const service = createService({ dataDir: path.join(dir, 'data'), mode: 'browser' });
  const server = await startBrowserServer({ service, staticDir });
  t.onTestFinished(async () => {
    await server.close();
    service.close();
  });
  return { dir, server };
}

function connect(url: string, origin: string | undefined): Promise<WebSocket> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, origin ? { origin } : {});
    ws.once('open', () => resolve(ws));
    ws.once('error', reject);
    ws.once('unexpected-response', (_req, res) => reject(new Error(`HTTP ${res.statusCode}`)));
  });
}

function call(ws: WebSocket, id: number, channel: string, arg: unknown): Promise<any> {
  return new Promise((resolve) => {
    const onMsg = (d: WebSocket.RawData) => {
      const m = JSON.parse(String(d));
      if (m.id === id) {
        ws.off('message', onMsg);
        resolve(m.reply);
      }
    };
    ws.on('message', onMsg);
    ws.send(JSON.stringify({ id, channel, arg }));
  });
}

test('listens on 127.0.0.1 with a random token and serves the page with a CSP', async (t) => {
  const { server } = await setup(t);
  assert.match(server.url, /^http:\/\/127\.0\.0\.1:\d+\/\?token=[\w-]{32}$/);
  const res = await fetch(server.url);
  assert.equal(res.status, 200);
  assert.match(res.headers.get('content-security-policy') ?? '', /default-src 'self'; script-src 'self'/);
  const up = await fetch(`${server.origin}/..%2fsecret.txt`);
  assert.notEqual(up.status, 200);
});

test('WebSocket refuses a wrong token, a foreign Origin, a missing Origin', async (t) => {
  const { server } = await setup(t);
  const ws = `ws://127.0.0.1:${server.port}/ws`;
  await assert.rejects(connect(`${ws}?token=nope`, server.origin), /HTTP 401/);
  await assert.rejects(connect(`${ws}?token=${server.token}`, 'http://evil.example'), /HTTP 403/);
  await assert.rejects(connect(`${ws}?token=${server.token}`, undefined), /HTTP 403/);
  const ok = await connect(`${ws}?token=${server.token}`, server.origin);
  ok.close();
});

test('the contract over WebSocket: replies, typed errors, pushed events', async (t) => {
  const { dir, server } = await setup(t);
  const { top } = buildSeed(fs.mkdtempSync(path.join(dir, 'seed-')));
  const ws = await connect(`ws://127.0.0.1:${server.port}/ws?token=${server.token}`, server.origin);
  t.onTestFinished(() => ws.close());
  const events: any[] = [];
  ws.on('message', (d) => {
    const m = JSON.parse(String(d));
    if (m.event) events.push(m);
  });
  const added = await call(ws, 1, 'workspace:add', { path: top });
  assert.equal(added.ok, true);
  assert.equal(added.result.image.path, top);
  assert.equal(added.result.report.layers.length, 2);
  const list = await call(ws, 2, 'workspace:list', undefined);
  assert.deepEqual(list.result.map((w: any) => w.path), [top]);
  const density = await call(ws, 3, 'contents:density', { source: { kind: 'since', image: top, checkpoint: 'bitmap1' }, start: 0, end: 524288, buckets: 8 });
  assert.deepEqual(density.result.marked, [0, 0, 65536, 65536, 65536, 65536, 65536, 0]);
  const missing = await call(ws, 4, 'chain:inspect', { path: path.join(dir, 'nope.qcow2') });
  assert.deepEqual(missing, { ok: false, error: { code: 'E_NOT_FOUND', message: `${path.join(dir, 'nope.qcow2')}: no such file` } });
  const unknown = await call(ws, 5, 'fs:delete', {});
  assert.equal(unknown.error.code, 'E_BAD_INPUT');
  const relative = await call(ws, 6, 'chain:inspect', { path: 'top.qcow2' });
  assert.equal(relative.error.code, 'E_BAD_INPUT');
  assert.ok(events.some((e) => e.event === 'workspace:changed'));
  assert.ok(events.some((e) => e.event === 'chain:scanned' && e.payload.image === top));
});
