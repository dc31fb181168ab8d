// strata stream: the backing data pulled into the top (offline) and the removed layers' bitmaps
// carried into it, in creation order, so "changes since" every checkpoint still covers every changed
// block (raw copies taken when each checkpoint was made) and is not inflated by the copy.
import fs from 'node:fs';
import path from 'node:path';
import { test, expect, vi } from 'vitest';
import { spawnSync } from 'node:child_process';
import { G, K, seedBase, overlay, write, addBitmap, checkpoint, checkpointedBase, brokenGap, strata, sums, assertTruth, qemuCheckAll, crashWhileOpen } from './scenarios.ts';
import { qemuImg, qemuInfoChain } from '../helpers/qemu.ts';
import { rawCopy } from '../helpers/truth.ts';
import { createService } from '../../electron/core/service.ts';
import { dispatch } from '../../electron/core/dispatch.ts';

vi.setConfig({ testTimeout: 120_000 });

/** The seed's example exactly: base bitmap1 (disabled) bitmap2 (recording), top bitmap3 (recording). */
function seed() {
  const s = seedBase();
  overlay(s, 'top.qcow2');
  addBitmap(s.top, 'bitmap3');
  checkpoint(s, 'bitmap3');
  write(s.top, 0x44, 192 * K, 64 * K);
  write(s.top, 0x44, 320 * K, 128 * K);
  return s;
}

test('stream the seed chain: the top becomes standalone with bitmap1, bitmap2, bitmap3 in creation order, every drawing unchanged', () => {
  const s = seed();
  const [top, base] = s.layers;
  const disk = rawCopy(top, path.join(s.dir, 'disk-before.raw'));
  const before = sums(s.layers);
  const dry = strata(s.dir, ['stream', top, '--json']);
  expect(dry.code, dry.stderr).toBe(0);
  expect(dry.json.applied).toBe(false);
  expect(sums(s.layers)).toEqual(before);
  expect(dry.json.carried).toEqual([
    { name: 'bitmap1', from: [base], created: true },
    { name: 'bitmap2', from: [base], created: true },
  ]);
  const drawings = (vs: any[]) => vs.map((v: any) => [v.name, v.state, v.drawing]);
  const seedDrawings = [
    ['bitmap1', 'ok', '--11111-'],
    ['bitmap2', 'ok', '---1111-'],
    ['bitmap3', 'ok', '---1-11-'],
  ];
  expect(drawings(dry.json.before)).toEqual(seedDrawings);
  expect(drawings(dry.json.after)).toEqual(seedDrawings);

  const r = strata(s.dir, ['stream', top, '--yes', '--json']);
  expect(r.code, r.stderr).toBe(0);
  expect(r.json.outcome.state).toBe('done');
  // standalone, the same disk, the base untouched
  expect(qemuInfoChain(top).map((l: any) => l.filename)).toEqual([top]);
  expect(fs.readFileSync(rawCopy(top, path.join(s.dir, 'disk-after.raw'))).equals(fs.readFileSync(disk))).toBe(true);
  expect(sums([base])).toEqual({ [base]: before[base] });
  s.layers = [top];
  // QEMU itself reads the bitmaps in creation order, none of them inflated by the copy
  const bitmaps = qemuInfoChain(top)[0]['format-specific'].data.bitmaps.map((b: any) => [b.name, b.flags]);
  expect(bitmaps).toEqual([
    ['bitmap1', []],
    ['bitmap2', ['auto']],
    ['bitmap3', ['auto']],
  ]);
  const again = strata(s.dir, ['repair', top, '--json']);
  expect(again.json.findings).toEqual([]);
  expect(drawings(again.json.before)).toEqual(seedDrawings);
  expect(assertTruth(s).map((x) => [x.name, x.state, x.missed])).toEqual([
    ['bitmap1', 'ok', 0],
    ['bitmap2', 'ok', 0],
    ['bitmap3', 'ok', 0],
  ]);
  qemuCheckAll(s);
  // writes after the stream are tracked by every checkpoint
  write(top, 0x45, 7 * G, G);
  write(top, 0x45, 0, 4 * K);
  expect(assertTruth(s).every((x) => x.state === 'ok' && x.missed === 0)).toBe(true);
  // the history has the plan, done
  const h = strata(s.dir, ['history', '--plans', '--json']);
  expect(h.json.some((p: any) => p.kind === 'stream' && p.state === 'done')).toBe(true);
});

test('stream with --base: the middle layer leaves, its checkpoint is merged into the top’s copy (libvirt style) and the base keeps its own', () => {
  // base: c1 (recording); mid: c1, c2 (recording, libvirt copies every checkpoint); top: c1, c2.
  const s = checkpointedBase(2 * G);
  overlay(s, 'mid.qcow2');
  addBitmap(s.top, 'c1');
  addBitmap(s.top, 'c2');
  checkpoint(s, 'c2');
  write(s.top, 0x43, 3 * G, G);
  overlay(s, 'top.qcow2');
  addBitmap(s.top, 'c1');
  addBitmap(s.top, 'c2');
  write(s.top, 0x44, 5 * G, G);
  const [top, mid, base] = s.layers;
  const r = strata(s.dir, ['stream', top, '--base', base, '--yes', '--json']);
  expect(r.code, r.stderr).toBe(0);
  expect(r.json.carried).toEqual([
    { name: 'c1', from: [mid], created: false },
    { name: 'c2', from: [mid], created: false },
  ]);
  expect(qemuInfoChain(top).map((l: any) => l.filename)).toEqual([top, base]);
  s.layers = [top, base];
  expect(assertTruth(s).map((x) => [x.name, x.state, x.missed])).toEqual([
    ['c1', 'ok', 0],
    ['c2', 'ok', 0],
  ]);
  write(top, 0x45, 7 * G, G);
  expect(assertTruth(s).every((x) => x.state === 'ok' && x.missed === 0)).toBe(true);
  qemuCheckAll(s);
});

test('stream refuses, naming the file, and writes nothing: no backing file, a --base outside the chain, an in-use bitmap in the top', async () => {
  const s = seed();
  const [top, base] = s.layers;
  const before = sums(s.layers);
  const alone = strata(s.dir, ['stream', base, '--yes']);
  expect(alone.code).toBe(2);
  expect(alone.stderr).toContain(`${base}: has no backing file`);
  const other = path.join(s.dir, 'other.qcow2');
  qemuImg('create', '-q', '-f', 'qcow2', other, '1M');
  const wrong = strata(s.dir, ['stream', top, '--base', other, '--yes']);
  expect(wrong.code).toBe(2);
  expect(wrong.stderr).toContain(`--base ${other}: not a layer of ${top}`);
  const adjacent = strata(s.dir, ['stream', top, '--base', base, '--yes']);
  expect(adjacent.code).toBe(2);
  expect(adjacent.stderr).toContain('nothing between them');
  expect(sums(s.layers)).toEqual(before);
  await crashWhileOpen(top, 0);
  const crashed = sums(s.layers);
  const inUse = strata(s.dir, ['stream', top, '--yes']);
  expect(inUse.code).toBe(2);
  expect(inUse.stderr).toContain(`${top}: bitmaps 'bitmap3' are in-use (inconsistent); run strata repair first`);
  expect(sums(s.layers)).toEqual(crashed);
});

test('a gap in the streamed layers is not hidden: the stream is refused, nothing written; after strata repair --yes it streams and every checkpoint covers every write', () => {
  // base c1; mid made with qemu-img create -b (no bitmap: c1 cannot be trusted); top c1 again.
  const s = brokenGap();
  const [top, mid, base] = s.layers;
  const before = sums(s.layers);
  const dry = strata(s.dir, ['stream', top, '--json']);
  expect(dry.code).toBe(2);
  expect(dry.json.before.map((v: any) => [v.name, v.state])).toEqual([['c1', 'unknown']]);
  expect(dry.json.refused).toContain(`checkpoint 'c1' cannot be trusted now (layer mid.qcow2 has no bitmap for checkpoint 'c1'`);
  expect(dry.json.plan).toEqual([]);
  const refused = strata(s.dir, ['stream', top, '--yes']);
  expect(refused.code).toBe(2);
  expect(refused.stderr).toContain(`a stream would remove the layer that says so and call it ok, missing its writes. Run strata repair ${top} first`);
  // Kept on the base, c1 stays unknown after (the top then holds mid's data, which no c1 covers): not refused.
  const kept = strata(s.dir, ['stream', top, '--base', base, '--json']);
  expect(kept.code, kept.stderr).toBe(0);
  expect(kept.json.after.map((v: any) => [v.name, v.state])).toEqual([['c1', 'unknown']]);
  expect(sums(s.layers)).toEqual(before);
  expect(strata(s.dir, ['repair', top, '--yes']).code).toBe(0);
  const r = strata(s.dir, ['stream', top, '--yes', '--json']);
  expect(r.code, r.stderr).toBe(0);
  expect(r.json.carried).toEqual([{ name: 'c1', from: [mid, base], created: false }]);
  s.layers = [top];
  expect(assertTruth(s).map((x) => [x.name, x.state, x.missed])).toEqual([['c1', 'ok', 0]]);
  qemuCheckAll(s);
});

const child = (s: { dir: string; top: string }, env: Record<string, string>) =>
  spawnSync(process.execPath, ['--import', 'tsx', path.join(import.meta.dirname, 'stream-child.ts'), s.top], { encoding: 'utf8', env: { ...process.env, STRATA_HOME: path.join(s.dir, 'home'), ...env } });

// The seed's stream has 9 steps: set bitmap3 aside (2), carry bitmap1 and bitmap2, add bitmap3
// again, copy the data, enable bitmap2 and bitmap3, remove the temporary bitmap.
for (let step = 0; step < 9; step++) {
  for (const when of ['running', 'ran']) {
    test(`kill -9 during a stream (${when}-step-${step}): the next strata stream --yes finishes it, every checkpoint right`, () => {
      const s = seed();
      const k = child(s, { CRASH_AT: `${when}-step-${step}` });
      expect(k.signal, k.stderr).toBe('SIGKILL');
      const r = strata(s.dir, ['stream', s.top, '--yes', '--json']);
      expect(r.code, r.stderr).toBe(0);
      expect(JSON.parse(r.stdout.split('\n')[0])).toMatchObject({ state: 'done', resolution: expect.stringMatching(/^resumed after a restart and finished/) });
      expect(qemuInfoChain(s.top).map((l: any) => l.filename)).toEqual([s.top]);
      expect(qemuInfoChain(s.top)[0]['format-specific'].data.bitmaps.map((b: any) => b.name)).toEqual(['bitmap1', 'bitmap2', 'bitmap3']);
      s.layers = [s.top];
      expect(strata(s.dir, ['repair', s.top, '--json']).json.before.map((v: any) => v.drawing)).toEqual(['--11111-', '---1111-', '---1-11-']);
      expect(assertTruth(s).map((x) => [x.state, x.missed])).toEqual([['ok', 0], ['ok', 0], ['ok', 0]]);
      qemuCheckAll(s);
    });
  }
}

test('kill -9 during a stream, then the app starts: it finishes the stream before answering its history', async () => {
  const s = seed();
  const k = child(s, { CRASH_AT: 'ran-step-5' });
  expect(k.signal, k.stderr).toBe('SIGKILL');
  const service = createService({ dataDir: path.join(s.dir, 'home'), mode: 'browser' });
  try {
    const r = await dispatch(service, 'history:plans', {});
    expect(r.ok).toBe(true);
    const plans = (r as any).result.filter((p: any) => p.kind === 'stream');
    expect(plans.map((p: any) => [p.state, p.resolution])).toEqual([['done', expect.stringMatching(/^resumed after a restart and finished/)]]);
  } finally {
    service.close();
  }
  expect(qemuInfoChain(s.top)[0]['format-specific'].data.bitmaps.map((b: any) => [b.name, b.flags])).toEqual([
    ['bitmap1', []],
    ['bitmap2', ['auto']],
    ['bitmap3', ['auto']],
  ]);
  s.layers = [s.top];
  expect(assertTruth(s).map((x) => [x.state, x.missed])).toEqual([['ok', 0], ['ok', 0], ['ok', 0]]);
});

test('a stream whose copy fails (the base moved away) rolls back: the chain and its checkpoints as before', () => {
  const s = seed();
  const [top, base] = s.layers;
  const k = child(s, { HIDE_AT: 'running-step-5', BASE: base });
  expect(k.status, k.stderr).toBe(0);
  expect(JSON.parse(k.stdout)).toEqual({ state: 'rolled-back', steps: 9 });
  fs.renameSync(base + '.away', base);
  expect(qemuInfoChain(top).map((l: any) => l.filename)).toEqual([top, base]);
  expect(qemuInfoChain(top)[0]['format-specific'].data.bitmaps.map((b: any) => [b.name, b.flags])).toEqual([['bitmap3', ['auto']]]);
  const r = strata(s.dir, ['repair', top, '--json']);
  expect(r.json.findings).toEqual([]);
  expect(r.json.before.map((v: any) => v.drawing)).toEqual(['--11111-', '---1111-', '---1-11-']);
  expect(assertTruth(s).map((x) => x.state)).toEqual(['ok', 'ok', 'ok']);
});
