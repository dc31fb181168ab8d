// The repair rules on facts alone: no QEMU, no files.
import { test, expect } from 'vitest';
import { findings, unrepairable, type FactLayer, type RepairFacts, type FactBitmap } from '../../electron/core/repair/findings.ts';
import { decideRepairs } from '../../electron/core/repair/plan.ts';

const G = 65536;
const bm = (name: string, o: Partial<FactBitmap> = {}): FactBitmap => ({ name, granularity: G, auto: true, inUse: false, ...o });
const layer = (p: string, bitmaps: FactBitmap[], o: Partial<FactLayer> = {}): FactLayer => ({
  path: `/d/${p}`,
  format: 'qcow2',
  virtualSize: 8 * G,
  backingFile: 'below.qcow2',
  bitmaps,
  bitmapsStale: false,
  allocatedBytes: 2 * G,
  uncoveredBytes: 0,
  ...o,
});
const facts = (layers: FactLayer[], o: Partial<RepairFacts> = {}): RepairFacts => ({ image: layers[0].path, layers, lock: 'free', previous: null, missingBacking: null, ...o });
const codes = (f: RepairFacts) => findings(f).map((x) => x.code);
const base = (bitmaps: FactBitmap[], o: Partial<FactLayer> = {}) => layer('base.qcow2', bitmaps, { backingFile: null, ...o });

test('a healthy chain has no findings', () => {
  expect(findings(facts([layer('top.qcow2', [bm('b3')]), base([bm('b1', { auto: false }), bm('b2')])]))).toEqual([]);
});

test('an overlay made outside Strata: untracked-overlay, repaired with the recording bitmaps of the layer below', () => {
  const f = facts([layer('top.qcow2', []), base([bm('b1', { auto: false }), bm('b2')])]);
  const [x] = findings(f);
  expect(x.code).toBe('untracked-overlay');
  expect(x.layers).toEqual(['/d/top.qcow2']);
  expect(x.bitmaps).toEqual(['b1', 'b2']);
  expect(x.repairable).toBe(true);
  expect(x.repair).toEqual({ kind: 'bitmaps-from-allocation', layer: '/d/top.qcow2', bitmaps: [{ name: 'b2', granularity: G }] });
  expect(decideRepairs(f).after).toEqual([]);
});

test('a middle layer without bitmaps: gap', () => {
  const f = facts([layer('top.qcow2', [bm('b3')]), layer('mid.qcow2', []), base([bm('b1')])]);
  const x = findings(f);
  expect(x.map((y) => y.code)).toEqual(['gap']);
  expect(x[0].layers).toEqual(['/d/mid.qcow2']);
  expect(x[0].repair).toMatchObject({ kind: 'bitmaps-from-allocation', layer: '/d/mid.qcow2' });
});

test('two overlays made outside: both repaired, top down', () => {
  const f = facts([layer('t2.qcow2', []), layer('t1.qcow2', []), base([bm('b1')])]);
  expect(codes(f)).toEqual(['untracked-overlay', 'untracked-overlay']);
  const d = decideRepairs(f);
  expect(d.actions.map((a) => a.layer)).toEqual(['/d/t2.qcow2', '/d/t1.qcow2']);
  expect(d.after).toEqual([]);
});

test('in-use with the lock held is not a problem; with the lock free it is a crash', () => {
  const layers = [layer('top.qcow2', [bm('b2', { inUse: true })]), base([bm('b1')])];
  const live = findings(facts(layers, { lock: 'locked' }));
  expect(live.map((x) => x.code)).toEqual(['in-use-live']);
  expect(live[0].problem).toBe(false);
  expect(unrepairable(live)).toEqual([]);
  const crashed = findings(facts(layers));
  expect(crashed[0].code).toBe('in-use-crashed');
  expect(crashed[0].repair).toEqual({ kind: 'remove-bitmaps', layer: '/d/top.qcow2', bitmaps: ['b2'] });
  // removing leaves the top without bitmaps for b1: refilled from its allocation
  const d = decideRepairs(facts(layers));
  expect(d.actions.map((a) => a.kind)).toEqual(['remove-bitmaps', 'bitmaps-from-allocation']);
  expect(d.after).toEqual([]);
});

test('a disabled newest bitmap in the active layer: enabled with its allocation merged in, never alone', () => {
  const f = facts([layer('top.qcow2', [bm('b2', { auto: false })]), base([bm('b1')])]);
  const [x] = findings(f);
  expect(x.code).toBe('disabled-newest');
  expect(x.repair).toEqual({ kind: 'enable-with-allocation', layer: '/d/top.qcow2', bitmap: { name: 'b2', granularity: G } });
  // a base layer: a write that freed clusters leaves no trace in its allocation: refused
  const single = findings(facts([base([bm('b1', { auto: false })])]));
  expect(single[0].code).toBe('disabled-newest');
  expect(single[0].repairable).toBe(false);
  expect(unrepairable(single).length).toBe(1);
});

test('stale bitmaps: dropped, saying what is lost', () => {
  const f = facts([base([bm('b1')], { bitmapsStale: true })]);
  const [x] = findings(f);
  expect(x.code).toBe('stale-bitmaps');
  expect(x.repair?.kind).toBe('drop-stale');
  expect(x.consequence).toMatch(/lost/);
});

test('a layer written before its bitmaps were created: uncovered-allocation, merged into its newest bitmap', () => {
  const f = facts([layer('top.qcow2', [bm('b2')], { uncoveredBytes: 65536 }), base([bm('b1')])]);
  const [x] = findings(f);
  expect(x.code).toBe('uncovered-allocation');
  expect(x.repair).toEqual({ kind: 'merge-allocation', layer: '/d/top.qcow2', bitmap: { name: 'b2', granularity: G } });
});

test('a missing backing file: candidates listed, repaired only with a chosen one', () => {
  const m = { layer: '/d/top.qcow2', path: '/d/old.qcow2', backingFormat: 'qcow2', candidates: [{ path: '/d/new.qcow2', matchesLastScan: true }], chosen: null };
  const f = facts([layer('top.qcow2', [])], { missingBacking: m });
  const x = findings(f)[0];
  expect(x.code).toBe('backing-missing');
  expect(x.repairable).toBe(false);
  expect(x.message).toContain('/d/new.qcow2');
  const y = findings(facts([layer('top.qcow2', [])], { missingBacking: { ...m, chosen: '/d/new.qcow2' } }))[0];
  expect(y.repair).toEqual({ kind: 'rebase-unsafe', layer: '/d/top.qcow2', backing: '/d/new.qcow2', backingFormat: 'qcow2' });
  expect(decideRepairs(facts([layer('top.qcow2', [])], { missingBacking: { ...m, chosen: '/d/new.qcow2' } })).actions.map((a) => a.kind)).toEqual(['rebase-unsafe']);
});

test('from the scan history: a layer that left the chain, a backing written under its overlay', () => {
  const now = [layer('top.qcow2', [bm('b2')]), base([bm('b1')], { allocatedBytes: 5 * G })];
  const previous = [
    { path: '/d/top.qcow2', allocatedBytes: 2 * G, bitmaps: [] },
    { path: '/d/base.qcow2', allocatedBytes: 2 * G, bitmaps: [{ name: 'b1', flags: ['auto'], dirtyBytes: 0 }] },
  ];
  const x = findings(facts(now, { previous }));
  expect(x.map((y) => y.code)).toEqual(['backing-written-after-overlay']);
  expect(x[0].repairable).toBe(false);
  const gone = findings(facts([base([bm('b1')])], { previous: [{ path: '/d/top.qcow2', allocatedBytes: G, bitmaps: [{ name: 'b9', flags: ['auto'], dirtyBytes: G }] }, previous[1]] }));
  expect(gone.map((y) => y.code)).toEqual(['layer-disappeared']);
  expect(gone[0].bitmaps).toEqual(['b9']);
  expect(gone[0].problem).toBe(false);
});

test('with the lock held nothing is repaired offline', () => {
  const f = facts([layer('top.qcow2', []), base([bm('b1')])], { lock: 'locked' });
  const [x] = findings(f);
  expect(x.code).toBe('untracked-overlay');
  expect(x.repairable).toBe(false);
  expect(decideRepairs(f).actions).toEqual([]);
});
