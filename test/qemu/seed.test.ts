// The worked example of seeds/checkpoints-and-commit.txt (domain.md "The worked example"), built
// with real qemu-img/qemu-io, and its variants. 8 clusters of 64 KiB, bitmaps of 64 KiB granularity:
//
//   backing: AABBCC--   bitmap1 --11---- (disabled)   bitmap2 ----11-- (recording)
//   active:  ---D-DD-   bitmap3 ---1-11- (recording)
//
// since(checkpoint1) = --11111-, since(checkpoint2) = ---1111-, since(checkpoint3) = ---1-11-.
import { test, afterAll } from 'vitest';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { openChain, allocationExtents, bitmapExtents, findBitmap, type Chain } from '../../electron/core/qcow2/chain.ts';
import { ChainContents, since } from '../../electron/core/checkpoints.ts';
import { inspect } from '../../electron/core/inspect.ts';
import type { ExtentList } from '../../electron/core/extents.ts';
import { Img, KiB, killChildren, type Op } from '../helpers/image-gen.ts';

const CL = 64 * KiB;
const SIZE = 8 * CL;

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'strata-seed-'));
afterAll(async () => {
  await killChildren();
  fs.rmSync(root, { recursive: true, force: true });
});
let n = 0;
const freshDir = () => fs.mkdtempSync(path.join(root, `v${n++}-`));

/** Writes of whole clusters: `pattern` letters at cluster indexes. */
const clustersOp = (first: number, count: number, letter: string): Op => ({ op: 'write', off: first * CL, len: count * CL, pattern: letter.charCodeAt(0) });

/** An extent list as the seed draws it: one character per 64 KiB cluster, '1' for marked. */
function draw(l: ExtentList): string {
  const cells = new Array(8).fill('-');
  for (let i = 0; i < l.count; i++) {
    assert.equal(l.starts[i] % CL, 0, 'extent start on a cluster boundary');
    assert.equal(l.ends[i] % CL, 0, 'extent end on a cluster boundary');
    for (let c = l.starts[i] / CL; c < l.ends[i] / CL; c++) cells[c] = '1';
  }
  return cells.join('');
}

/** backing: AA, bitmap1, BB, bitmap1 disabled + bitmap2, CC. */
function seedBase(dir: string): Img {
  const base = Img.qcow2(path.join(dir, 'base.qcow2'), SIZE);
  base.io([clustersOp(0, 2, 'A')]);
  base.addBitmap('bitmap1', CL);
  base.io([clustersOp(2, 2, 'B')]);
  base.disable('bitmap1').addBitmap('bitmap2', CL);
  base.io([clustersOp(4, 2, 'C')]);
  return base;
}

const D_WRITES: Op[] = [clustersOp(3, 1, 'D'), clustersOp(5, 2, 'D')];

/** The seed chain exactly: overlay with bitmap3, then D written at ---D-DD-. */
function seedChain(dir: string): { base: Img; top: Img } {
  const base = seedBase(dir);
  const top = Img.qcow2(path.join(dir, 'top.qcow2'), SIZE, { backing: base }).addBitmap('bitmap3', CL);
  top.io(D_WRITES);
  return { base, top };
}

function withOpen<T>(top: string, fn: (c: Chain, cc: ChainContents) => T): T {
  const c = openChain(top);
  try {
    return fn(c, new ChainContents(c));
  } finally {
    c.close();
  }
}

function bitmapDrawing(c: Chain, layer: number, name: string): string {
  const bm = findBitmap(c.layers[layer], name);
  assert.ok(bm, `bitmap ${name} in layer ${layer}`);
  return draw(bitmapExtents(c.layers[layer], bm));
}

function assertUnknown(cc: ChainContents, checkpoint: string, file: string, also?: RegExp): string[] {
  const s = since(cc, checkpoint);
  assert.equal(s.extents, null, `since(${checkpoint}) must be unknown`);
  assert.ok(s.problems.length > 0, `since(${checkpoint}) must give reasons`);
  assert.ok(
    s.problems.some((p) => p.includes(file) && (!also || also.test(p))),
    `since(${checkpoint}): a reason naming ${file}${also ? ` and matching ${also}` : ''}; got ${JSON.stringify(s.problems)}`,
  );
  return s.problems;
}

test('seed: layers and bitmaps hold exactly what the seed draws', () => {
  const { top } = seedChain(freshDir());
  withOpen(top.path, (c) => {
    assert.equal(c.layers.length, 2);
    assert.equal(draw(allocationExtents(c.layers[1])), '111111--', 'backing AABBCC--');
    assert.equal(draw(allocationExtents(c.layers[0])), '---1-11-', 'active ---D-DD-');
    assert.equal(bitmapDrawing(c, 1, 'bitmap1'), '--11----');
    assert.equal(bitmapDrawing(c, 1, 'bitmap2'), '----11--');
    assert.equal(bitmapDrawing(c, 0, 'bitmap3'), '---1-11-');
    assert.deepEqual(
      c.layers[1].bitmaps.map((b) => [b.name, b.auto, b.inUse, b.index]),
      [
        ['bitmap1', false, false, 0],
        ['bitmap2', true, false, 1],
      ],
    );
    assert.deepEqual(c.layers[0].bitmaps.map((b) => [b.name, b.auto, b.inUse]), [['bitmap3', true, false]]);
  });
});

test('seed: since each checkpoint is the union of it and every later bitmap', () => {
  const { base, top } = seedChain(freshDir());
  withOpen(top.path, (c, cc) => {
    const want: [string, string, [string, string][]][] = [
      ['bitmap1', '--11111-', [[base.path, 'bitmap1'], [base.path, 'bitmap2'], [top.path, 'bitmap3']]],
      ['bitmap2', '---1111-', [[base.path, 'bitmap2'], [top.path, 'bitmap3']]],
      ['bitmap3', '---1-11-', [[top.path, 'bitmap3']]],
    ];
    for (const [cp, drawing, sources] of want) {
      const s = since(cc, cp);
      assert.deepEqual(s.problems, [], `since(${cp}) problems`);
      assert.ok(s.extents, `since(${cp}) known`);
      assert.equal(draw(s.extents), drawing, `since(${cp})`);
      assert.deepEqual(
        s.sources.map((x) => [x.layer.path, x.bitmap.name]).sort(),
        sources.sort(),
        `since(${cp}) sources`,
      );
    }
  });
  const report = inspect(top.path);
  assert.deepEqual(
    report.checkpoints.map((cp) => [cp.name, cp.state, cp.dirtyBytes]),
    [
      ['bitmap1', 'ok', 5 * CL],
      ['bitmap2', 'ok', 4 * CL],
      ['bitmap3', 'ok', 3 * CL],
    ],
  );
});

test('variant libvirt style: same bitmap names in both layers, all recording, gives the same unions', () => {
  const dir = freshDir();
  const base = Img.qcow2(path.join(dir, 'base.qcow2'), SIZE);
  base.io([clustersOp(0, 2, 'A')]);
  base.addBitmap('bitmap1', CL).io([clustersOp(2, 2, 'B')]);
  base.addBitmap('bitmap2', CL).io([clustersOp(4, 2, 'C')]);
  const top = Img.qcow2(path.join(dir, 'top.qcow2'), SIZE, { backing: base });
  top.addBitmap('bitmap1', CL).addBitmap('bitmap2', CL).addBitmap('bitmap3', CL);
  top.io(D_WRITES);
  withOpen(top.path, (c, cc) => {
    assert.equal(bitmapDrawing(c, 1, 'bitmap1'), '--1111--');
    assert.equal(bitmapDrawing(c, 1, 'bitmap2'), '----11--');
    for (const name of ['bitmap1', 'bitmap2', 'bitmap3']) assert.equal(bitmapDrawing(c, 0, name), '---1-11-', `top ${name}`);
    const got = ['bitmap1', 'bitmap2', 'bitmap3'].map((cp) => {
      const s = since(cc, cp);
      assert.deepEqual(s.problems, [], `since(${cp}) problems`);
      return draw(s.extents!);
    });
    assert.deepEqual(got, ['--11111-', '---1111-', '---1-11-']);
    const s1 = since(cc, 'bitmap1');
    assert.ok(s1.sources.some((x) => x.layer.path === base.path && x.bitmap.name === 'bitmap1'), 'base copy of bitmap1 used');
    assert.ok(s1.sources.some((x) => x.layer.path === top.path && x.bitmap.name === 'bitmap1'), 'top copy of bitmap1 used');
  });
});

test('variant: overlay made with qemu-img create -b (no bitmaps) and written -> unknown, naming the overlay', () => {
  const dir = freshDir();
  const base = seedBase(dir);
  const top = Img.qcow2(path.join(dir, 'plain-top.qcow2'), SIZE, { backing: base });
  top.io(D_WRITES);
  withOpen(top.path, (_c, cc) => {
    assertUnknown(cc, 'bitmap1', 'plain-top.qcow2');
    assertUnknown(cc, 'bitmap2', 'plain-top.qcow2');
  });
  const report = inspect(top.path);
  for (const cp of report.checkpoints) {
    assert.equal(cp.state, 'unknown', cp.name);
    assert.equal(cp.dirtyBytes, null, cp.name);
  }
});

test('variant: bitmap left in-use by kill -9 of qemu-io in the active layer -> unknown, naming it', async () => {
  const dir = freshDir();
  const { top } = seedChain(dir);
  await top.crashQemuIo([{ op: 'write', off: 7 * CL, len: 4 * KiB, pattern: 0x45 }]);
  withOpen(top.path, (c, cc) => {
    assert.equal(c.layers[0].bitmaps[0].inUse, true, 'construction: bitmap3 in-use on disk');
    for (const cp of ['bitmap1', 'bitmap2', 'bitmap3']) assertUnknown(cc, cp, 'top.qcow2', /in-use/);
  });
});

test('variant: bitmap left in-use in the backing only spoils the checkpoints that need it', async () => {
  const dir = freshDir();
  const { base, top } = seedChain(dir);
  await base.crashQemuIo([{ op: 'write', off: 7 * CL, len: 4 * KiB, pattern: 0x45 }]);
  withOpen(top.path, (c, cc) => {
    assert.ok(c.layers[1].bitmaps.every((b) => b.inUse), 'construction: base bitmaps in-use on disk');
    assertUnknown(cc, 'bitmap1', 'base.qcow2', /in-use/);
    assertUnknown(cc, 'bitmap2', 'base.qcow2', /in-use/);
    const s3 = since(cc, 'bitmap3');
    assert.deepEqual(s3.problems, []);
    assert.equal(draw(s3.extents!), '---1-11-');
  });
});

test('variant: newest bitmap of the active layer disabled -> unknown, naming the active layer', () => {
  const dir = freshDir();
  const { top } = seedChain(dir);
  top.disable('bitmap3');
  withOpen(top.path, (c, cc) => {
    assert.equal(c.layers[0].bitmaps[0].auto, false);
    for (const cp of ['bitmap1', 'bitmap2', 'bitmap3']) assertUnknown(cc, cp, 'top.qcow2', /disabled/);
  });
});

test('variant: overlay written before its bitmap was added -> unknown for older checkpoints, naming it', () => {
  const dir = freshDir();
  const base = seedBase(dir);
  const top = Img.qcow2(path.join(dir, 'early-top.qcow2'), SIZE, { backing: base });
  top.io([clustersOp(3, 1, 'D')]); // before bitmap3 exists: no bitmap records it
  top.addBitmap('bitmap3', CL).io([clustersOp(5, 2, 'D')]);
  withOpen(top.path, (c, cc) => {
    assert.equal(bitmapDrawing(c, 0, 'bitmap3'), '-----11-');
    assertUnknown(cc, 'bitmap1', 'early-top.qcow2');
    assertUnknown(cc, 'bitmap2', 'early-top.qcow2');
    // Checkpoint 3 is the moment bitmap3 was added: the earlier write is not a change since then.
    const s3 = since(cc, 'bitmap3');
    assert.deepEqual(s3.problems, []);
    assert.equal(draw(s3.extents!), '-----11-');
  });
});
