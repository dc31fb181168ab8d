// strata snapshot: the new top gets the checkpoint bitmaps in the same journaled plan, so after
// writes in it "changes since" every checkpoint covers every changed block (raw copies).
import fs from 'node:fs';
import path from 'node:path';
import { test, expect, vi } from 'vitest';
import { G, K, seedBase, write, checkpoint, strata, sums, assertTruth, qemuCheckAll } from './scenarios.ts';

vi.setConfig({ testTimeout: 120_000 });

test('snapshot keeps every checkpoint and adds one: the seed example, --11111- / ---1111- / ---1-11-', () => {
  const s = seedBase();
  const newTop = path.join(s.dir, 'top.qcow2');
  const before = sums(s.layers);
  const dry = strata(s.dir, ['snapshot', s.top, newTop, '--checkpoint', 'snap1', '--json']);
  expect(dry.code, dry.stderr).toBe(0);
  expect(dry.json.applied).toBe(false);
  expect(fs.existsSync(newTop)).toBe(false);
  expect(sums(s.layers)).toEqual(before);
  const r = strata(s.dir, ['snapshot', s.top, newTop, '--checkpoint', 'snap1', '--yes', '--json']);
  expect(r.code, r.stderr).toBe(0);
  expect(r.json.active).toBe(newTop);
  expect(r.json.bitmaps.map((b: any) => b.name)).toEqual(['bitmap2', 'snap1']);
  expect(r.json.after.map((v: any) => v.state)).toEqual(['ok', 'ok', 'ok']);
  s.top = newTop;
  s.layers.unshift(newTop);
  checkpoint(s, 'snap1');
  write(s.top, 0x44, 192 * K, 64 * K);
  write(s.top, 0x44, 320 * K, 128 * K);
  const again = strata(s.dir, ['repair', s.top, '--json']);
  expect(again.json.findings).toEqual([]);
  expect(again.json.before.map((v: any) => [v.name, v.drawing])).toEqual([
    ['bitmap1', '--11111-'],
    ['bitmap2', '---1111-'],
    ['snap1', '---1-11-'],
  ]);
  expect(assertTruth(s).map((x) => x.state)).toEqual(['ok', 'ok', 'ok']);
  qemuCheckAll(s);
  // a second snapshot on the same file is refused, naming it
  const twice = strata(s.dir, ['snapshot', path.join(s.dir, 'base.qcow2'), newTop, '--yes']);
  expect(twice.code).toBe(2);
  expect(twice.stderr).toContain(newTop);
  write(s.top, 0x45, 7 * G, G);
  expect(assertTruth(s).every((x) => x.state === 'ok')).toBe(true);
});
