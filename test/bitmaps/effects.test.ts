// bitmap:plan with `chain`: what a change does to the chain's checkpoints, weighed before it is made
// (the seed's chain, offline). Clearing the top's bitmap3 moves checkpoint 3 to now and makes 1 and 2 unknown; removing
// the base's bitmap2 would leave the rules calling checkpoint 1 ok with cluster 4 lost: unknown.
import { test } from 'vitest';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { createService, type Service } from '../../electron/core/service.ts';
import { dispatch } from '../../electron/core/dispatch.ts';
import { tempDir } from '../helpers/qemu.ts';
import { buildSeed } from '../core/seed-chain.ts';

async function call(s: Service, channel: string, arg?: unknown): Promise<any> {
  const r = await dispatch(s, channel, arg);
  if (!r.ok) throw Object.assign(new Error(r.error.message), { code: r.error.code });
  return r.result;
}
const K = 1024;

test('the preview of a bitmap change says which checkpoints it breaks, and changes nothing', { timeout: 60000 }, async (t) => {
  const dir = tempDir(t);
  const { top, base } = buildSeed(dir);
  const service = createService({ dataDir: path.join(dir, 'data'), mode: 'browser' });
  t.onTestFinished(() => service.close());
  const bytes = () => [fs.readFileSync(top), fs.readFileSync(base)];
  const before = bytes();
  const plan = (image: string, op: any) => call(service, 'bitmap:plan', { target: { kind: 'image', image }, op, chain: top });
  const view = (effects: any[]) => effects.map((e) => [e.name, e.before?.state ?? null, e.before?.dirtyBytes ?? null, e.after?.state ?? null, e.after?.dirtyBytes ?? null]);

  const clear = await plan(top, { op: 'clear', name: 'bitmap3' });
  assert.deepEqual(view(clear.effects), [
    ['bitmap1', 'ok', 320 * K, 'unknown', null],
    ['bitmap2', 'ok', 256 * K, 'unknown', null],
    ['bitmap3', 'ok', 192 * K, 'ok', 0],
  ]);
  assert.match(clear.effects[0].problems.join('\n'), /top\.qcow2 holds 192 KiB written that no bitmap of checkpoint 'bitmap1' covers/);

  const remove = await plan(base, { op: 'remove', name: 'bitmap2' });
  assert.deepEqual(view(remove.effects), [
    ['bitmap1', 'ok', 320 * K, 'unknown', null],
    ['bitmap2', 'ok', 256 * K, null, null],
  ]);
  assert.match(remove.effects[0].problems.join('\n'), /drops 64 KiB of the changes recorded since checkpoint 'bitmap1'/);

  // Changes that lose nothing: a new checkpoint; merging bitmap1 into bitmap2 (more marked than needed).
  const add = await plan(top, { op: 'add', name: 'nightly' });
  assert.deepEqual(view(add.effects), [['nightly', null, null, 'ok', 0]]);
  const merge = await plan(base, { op: 'merge', target: 'bitmap2', sources: [{ where: null, name: 'bitmap1' }] });
  assert.deepEqual(view(merge.effects), [['bitmap2', 'ok', 256 * K, 'ok', 320 * K]], 'more marked, still ok');
  // Disabling the active layer's only recording bitmap: every checkpoint stops covering new writes.
  const disable = await plan(top, { op: 'disable', name: 'bitmap3' });
  assert.deepEqual(disable.effects.map((e: any) => [e.name, e.after.state]), [['bitmap1', 'unknown'], ['bitmap2', 'unknown'], ['bitmap3', 'unknown']]);
  // Without `chain` the plan has no effects, as before.
  assert.deepEqual((await call(service, 'bitmap:plan', { target: { kind: 'image', image: top }, op: { op: 'clear', name: 'bitmap3' } })).effects, []);
  assert.deepEqual(bytes(), before, 'a plan writes nothing');
});
