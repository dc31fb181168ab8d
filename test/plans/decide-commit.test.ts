// The pure part of the commit plan: which base bitmaps may be disabled, which top bitmaps are
// carried, what records afterwards. No QEMU: facts in, decision out.
import { test } from 'vitest';
import assert from 'node:assert/strict';
import { decideCommit, type CommitFacts, type LiveBitmapFacts } from '../../electron/core/plans/commit-with-bitmaps.ts';
import { fromExtents } from '../../electron/core/extents.ts';

const K = 65536;
const bm = (name: string, over: Partial<LiveBitmapFacts> = {}): LiveBitmapFacts => ({ name, granularity: K, recording: true, persistent: true, busy: false, inconsistent: false, ...over });
const ext = (...cl: number[]) => fromExtents(cl.map((c) => ({ start: c * K, length: K })));

function facts(top: LiveBitmapFacts[], base: LiveBitmapFacts[], alloc: number[], contents: Record<string, number[]>, scheme: 'seed' | 'libvirt' = 'seed'): CommitFacts {
  return {
    scheme,
    top: { node: 't', file: '/top.qcow2', bitmaps: top },
    base: { node: 'b', file: '/base.qcow2', bitmaps: base },
    topContents: { allocation: ext(...alloc), bitmaps: new Map(Object.entries(contents).map(([k, v]) => [k, ext(...v)])) },
  };
}

test("the seed's chain: bitmap2 disabled for the commit, bitmap3 carried and created, bitmap2 re-enabled", () => {
  const d = decideCommit(facts([bm('bitmap3')], [bm('bitmap1', { recording: false }), bm('bitmap2')], [3, 5, 6], { bitmap3: [3, 5, 6] }));
  assert.deepEqual(d.effects.disabledDuringCommit, ['bitmap2']);
  assert.deepEqual(d.effects.carried, [{ name: 'bitmap3', granularity: K, persistent: true, created: true, recordsAfter: true }]);
  assert.deepEqual(d.effects.reEnabled, ['bitmap2']);
  assert.deepEqual(d.effects.enabledAfter, ['bitmap2', 'bitmap3']);
  assert.deepEqual(d.effects.checkpointsKept, ['bitmap1', 'bitmap2', 'bitmap3']);
  assert.equal(d.tempGranularity, K);
});

test('a top whose bitmaps miss one allocated cluster: the base bitmap keeps recording, with the byte count', () => {
  const d = decideCommit(facts([bm('bitmap3')], [bm('bitmap2')], [3, 5, 6], { bitmap3: [5, 6] }));
  assert.deepEqual(d.effects.disabledDuringCommit, []);
  assert.match(d.effects.keptRecording[0].why, /holds 64 KiB written that none of its bitmaps/);
});

test('a top bitmap older than the base checkpoint does not count for it', () => {
  // The top continues only 'A' (older); 'B' is newer, so writes in the top are not in "since B".
  const d = decideCommit(facts([bm('A')], [bm('A'), bm('B')], [1], { A: [1] }));
  assert.deepEqual(d.effects.disabledDuringCommit, ['A']);
  assert.deepEqual(d.effects.keptRecording.map((k) => k.name), ['B']);
});

test('an inconsistent top bitmap is not carried and is named as lost; an unreadable top keeps the base recording', () => {
  const d = decideCommit({ ...facts([bm('x', { inconsistent: true }), bm('y')], [bm('A')], [], {}), topContents: { unreadable: 'an NBD server is already running' } });
  assert.deepEqual(d.effects.lost.map((l) => l.name), ['x']);
  assert.deepEqual(d.effects.carried.map((c) => c.name), ['y']);
  assert.match(d.effects.keptRecording[0].why, /could not be read \(an NBD server is already running\)/);
  assert.ok(!d.effects.checkpointsKept.includes('x'));
});

test('a busy bitmap refuses the plan, naming the file', () => {
  assert.throws(() => decideCommit(facts([bm('y', { busy: true })], [], [], {})), (e: any) => e.code === 'E_BUSY' && /\/top\.qcow2: bitmap 'y' is busy/.test(e.message));
});

test("libvirt's scheme never disables; a disabled top bitmap is carried and stays disabled", () => {
  const d = decideCommit(facts([bm('A'), bm('old', { recording: false })], [bm('A')], [0], { A: [0] }, 'libvirt'));
  assert.deepEqual(d.effects.disabledDuringCommit, []);
  assert.deepEqual(d.effects.keptRecording.map((k) => k.name), ['A']);
  assert.deepEqual(
    d.effects.carried.map((c) => [c.name, c.created, c.recordsAfter]),
    [
      ['A', false, true],
      ['old', true, false],
    ],
  );
  assert.deepEqual(d.effects.enabledAfter, [], "'A' never stopped recording; 'old' stays disabled");
});

test('a middle layer leaving the chain too: its bitmaps are carried with the top\'s, and its uncovered allocation keeps the base recording', () => {
  const covered = facts([bm('c3')], [bm('c1', { recording: false }), bm('c2')], [5], { c3: [5] });
  covered.between = [{ node: 'm', file: '/mid.qcow2', bitmaps: [bm('c2'), bm('c4', { recording: false })], contents: { allocation: ext(3, 4), bitmaps: new Map([['c2', ext(3)], ['c4', ext(4)]]) } }];
  const d = decideCommit(covered);
  assert.deepEqual(d.effects.disabledDuringCommit, ['c2']);
  assert.deepEqual(d.effects.removed, ['/top.qcow2', '/mid.qcow2']);
  assert.deepEqual(d.effects.carried.map((c) => [c.name, c.created, c.from]), [['c2', false, ['/mid.qcow2']], ['c4', true, ['/mid.qcow2']], ['c3', true, ['/top.qcow2']]]);

  const gap = facts([bm('c3')], [bm('c2')], [5], { c3: [5] });
  gap.between = [{ node: 'm', file: '/mid.qcow2', bitmaps: [], contents: { allocation: ext(3), bitmaps: new Map() } }];
  const g = decideCommit(gap);
  assert.deepEqual(g.effects.disabledDuringCommit, []);
  assert.match(g.effects.keptRecording[0].why, /\/mid\.qcow2 has no bitmap for checkpoint 'c2'/);

  const inter = facts([bm('c3')], [bm('c2')], [5], { c3: [5] });
  inter.intermediate = { active: '/active.qcow2' };
  const i = decideCommit(inter);
  assert.equal(i.effects.active, '/active.qcow2');
  assert.equal(i.effects.intermediate, true);
  assert.equal(i.tempGranularity, null, 'no switch-over, no temporary bitmap');
});

test('never a false clean: a checkpoint made in a removed middle layer, under a top none of whose bitmaps counts for it, refuses the plan naming both', () => {
  const untracked = facts([], [], [6], {});
  untracked.between = [{ node: 'm', file: '/mid.qcow2', bitmaps: [bm('X')], contents: { allocation: ext(2, 3), bitmaps: new Map([['X', ext(3)]]) } }];
  for (const scheme of ['seed', 'libvirt'] as const) {
    untracked.scheme = scheme;
    assert.throws(
      () => decideCommit(untracked),
      (e: any) => e.code === 'E_CHECKPOINT_UNKNOWN' && /checkpoint 'X': \/top\.qcow2 has no bitmap for checkpoint 'X'/.test(e.message) && /strata repair/.test(e.message),
    );
  }
  // the same with the top tracked (its own X covers what it holds): carried, nothing refused; mid's
  // writes before X was made there (cluster 2) are older than X and do not count
  const tracked = facts([bm('X')], [], [6], { X: [6] });
  tracked.between = untracked.between;
  assert.deepEqual(decideCommit(tracked).effects.carried.map((c) => [c.name, c.created, c.from]), [['X', true, ['/top.qcow2', '/mid.qcow2']]]);
  // a top that is tracked for X but holds one cluster more than its bitmap: refused too
  const short = facts([bm('X')], [], [6, 7], { X: [6] });
  short.between = untracked.between;
  assert.throws(() => decideCommit(short), /\/top\.qcow2 holds 64 KiB written that none of its bitmaps for checkpoint 'X' covers/);
});

test("never a false clean: a base whose bitmaps for a checkpoint are all disabled is refused when the commit would make one record again, and left alone when it would not", () => {
  // active commit: the top's recording X is carried into the base's disabled X, which would record afterwards
  const d = facts([bm('X')], [bm('X', { recording: false })], [4], { X: [4] });
  assert.throws(() => decideCommit(d), (e: any) => e.code === 'E_CHECKPOINT_UNKNOWN' && /in \/base\.qcow2 every bitmap covering checkpoint 'X' is disabled/.test(e.message));
  // an intermediate commit of a layer with no bitmap of X: the base's X stays disabled, the checkpoint stays unknown by the base's own rule
  const inter = facts([], [bm('X', { recording: false })], [4], {});
  inter.intermediate = { active: '/active.qcow2' };
  assert.deepEqual(decideCommit(inter).effects.enabledAfter, []);
  // a newer recording bitmap in the base (the seed's chain) covers the disabled one: no refusal
  assert.doesNotThrow(() => decideCommit(facts([bm('Y')], [bm('X', { recording: false }), bm('Y')], [4], { Y: [4] })));
});
