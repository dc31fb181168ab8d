// history:activity: scans, jobs, bitmap operations and plans as one tagged list, newest first,
// merged in the core.
import { test } from 'vitest';
import assert from 'node:assert/strict';
import path from 'node:path';
import { createService, type Service } from '../../electron/core/service.ts';
import { dispatch } from '../../electron/core/dispatch.ts';
import type { ActivityEntry } from '../../electron/core/contract.ts';
import { tempDir } from '../helpers/qemu.ts';
import { buildSeed } from './seed-chain.ts';

async function call(s: Service, channel: string, arg?: unknown): Promise<any> {
  const r = await dispatch(s, channel, arg);
  if (!r.ok) throw Object.assign(new Error(r.error.message), { code: r.error.code });
  return r.result;
}

test('a scan then a bitmap change: tagged entries, newest first, each record whole', { timeout: 60000 }, async (t) => {
  const dir = tempDir(t);
  const service = createService({ dataDir: path.join(dir, 'data'), mode: 'browser' });
  t.onTestFinished(() => service.close());
  const { top } = buildSeed(dir);

  assert.deepEqual(await call(service, 'history:activity'), []);
  await call(service, 'chain:inspect', { path: top });
  await new Promise((r) => setTimeout(r, 5)); // distinct instants
  const done = await call(service, 'bitmap:apply', { target: { kind: 'image', image: top }, op: { op: 'add', name: 'ui', persistent: true, disabled: false } });

  const feed: ActivityEntry[] = await call(service, 'history:activity', { limit: 50 });
  const kinds = feed.map((e) => e.kind);
  assert.ok(kinds.includes('scan') && kinds.includes('operation'), kinds.join(','));
  for (let i = 1; i < feed.length; i++) assert.ok(feed[i - 1].at >= feed[i].at, `newest first at ${i}`);
  const op = feed.find((e) => e.kind === 'operation');
  const scan = feed.find((e) => e.kind === 'scan');
  assert.ok(op?.kind === 'operation' && scan?.kind === 'scan');
  assert.equal(op.operation.id, done.operation);
  assert.equal(op.operation.kind, 'bitmap-add');
  assert.equal(op.at, op.operation.createdAt);
  assert.equal(scan.scan.image, top);
  assert.equal(scan.at, scan.scan.scannedAt);
  assert.ok(feed.indexOf(op) < feed.indexOf(feed.filter((e) => e.kind === 'scan').at(-1)!), 'the bitmap change is newer than the first scan');
  // The same records the per-kind channels give.
  assert.deepEqual(op.operation, (await call(service, 'history:operations'))[0]);
  assert.deepEqual(
    feed.filter((e) => e.kind === 'scan').map((e) => (e as any).scan),
    await call(service, 'history:scans'),
  );
  // limit caps each kind.
  const one: ActivityEntry[] = await call(service, 'history:activity', { limit: 1 });
  assert.ok(one.filter((e) => e.kind === 'scan').length <= 1);
});
