// The reader against QEMU itself, on chains QEMU built (test/helpers/image-gen.ts):
//  - layers, file names, sizes, cluster sizes, backing strings/formats vs `qemu-img info --backing-chain`
//  - the whole-chain allocation map vs `qemu-img map --output=json`, and each layer's own allocation
//  - bitmap names, granularities and flags vs qemu-img info's format-specific bitmaps
//  - bitmap contents, byte for byte, vs the bitmap exported by qemu-nbd and read back with qemu-img map
// and everything also against what the construction implies (image-gen records it).
import { test, describe, beforeAll, afterAll } from 'vitest';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { openChain, allocationExtents, bitmapExtents, type Chain } from '../../electron/core/qcow2/chain.ts';
import { forEachMapExtent, type MapExtent } from '../../electron/core/chain-map.ts';
import { inspect } from '../../electron/core/inspect.ts';
import { toExtents, totalBytes } from '../../electron/core/extents.ts';
import { qemuInfoChain, qemuMap, run } from '../helpers/qemu.ts';
import { generateCases, killChildren, nbdBitmapExtents, normalize, bytesOf, Img, KiB, MiB, type GeneratedCase } from '../helpers/image-gen.ts';

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'strata-conf-'));
afterAll(async () => {
  await killChildren();
  fs.rmSync(root, { recursive: true, force: true });
});

const t0 = Date.now();
const cases: GeneratedCase[] = await generateCases(path.join(root, 'cases'));
const buildMs = Date.now() - t0;

// ---------------------------------------------------------------------------------------------
// Map comparison. Both sides are reduced to (depth, present, data, zero) and re-merged.
// One normalisation: where a qcow2 data cluster's host range is a hole in the host file, QEMU's
// block layer (block/io.c, want_zero) adds BDRV_BLOCK_ZERO and reports `"data": true, "zero": true`.
// The reader never looks at host-file holes, so it says data:true, zero:false. "zero" is therefore
// compared only where data is false (zero clusters, unallocated areas), where it carries meaning.
type M = Omit<MapExtent, never>;
function canon(list: M[]): M[] {
  const out: M[] = [];
  for (const e of list) {
    const x = { start: e.start, length: e.length, depth: e.depth, present: e.present, data: e.data, zero: e.data ? false : e.zero };
    const last = out[out.length - 1];
    if (last && last.start + last.length === x.start && last.depth === x.depth && last.present === x.present && last.data === x.data && last.zero === x.zero) {
      last.length += x.length;
    } else out.push(x);
  }
  return out;
}

function readerMap(chain: Chain): M[] {
  const out: M[] = [];
  forEachMapExtent(chain, (e) => out.push({ ...e }));
  return out;
}

/** `qemu-img map` of one layer file (with its own backing chain): what this layer defines is depth 0, present. */
function qemuLayerAllocation(file: string, format: string) {
  const raw = JSON.parse(run('qemu-img', ['map', '-U', '-f', format, '--output=json', file])) as any[];
  return normalize(raw.filter((e) => e.depth === 0 && e.present).map((e) => ({ start: e.start, length: e.length })));
}

const sortFlags = (f: string[]) => [...f].sort();

function versionOf(info: any): number | null {
  const compat = info['format-specific']?.data?.compat;
  return compat === '0.10' ? 2 : compat === '1.1' ? 3 : null;
}

// ---------------------------------------------------------------------------------------------

test(`generator builds at least 30 varied cases with real QEMU tools (${buildMs} ms)`, () => {
  assert.ok(cases.length >= 30, `${cases.length} cases`);
  const clusterSizes = new Set(cases.flatMap((c) => c.layers.map((l) => l.clusterSize)));
  for (const cs of [512, 4 * KiB, 64 * KiB, 2 * MiB]) assert.ok(clusterSizes.has(cs), `no case with ${cs}-byte clusters`);
  assert.ok(cases.some((c) => c.layers.some((l) => l.version === 2)), 'no qcow2 v2 layer');
  assert.ok(cases.some((c) => c.layers.some((l) => l.extendedL2)), 'no extended L2 layer');
  assert.ok(cases.some((c) => c.layers.some((l) => l.format === 'raw')), 'no raw base');
  assert.ok(cases.some((c) => c.layers.length === 5), 'no 5-layer chain');
  assert.ok(cases.some((c) => c.expectedBitmaps.some((b) => b.inUse)), 'no in-use bitmap');
  assert.ok(cases.some((c) => c.expectedBitmaps.some((b) => !b.recording)), 'no disabled bitmap');
  const grans = new Set(cases.flatMap((c) => c.expectedBitmaps.map((b) => b.granularity)));
  for (const g of [512, 4 * KiB, 64 * KiB, 1 * MiB, 2 * MiB]) assert.ok(grans.has(g), `no bitmap of granularity ${g}`);
});

test('probe: over qemu-nbd, qemu-img map shows the dirty areas of a known bitmap as data:false', async (t) => {
  const dir = path.join(root, 'probe');
  const img = Img.qcow2(path.join(dir, 'p.qcow2'), 1 * MiB).addBitmap('known', 64 * KiB);
  img.io([
    { op: 'write', off: 64 * KiB, len: 64 * KiB },
    { op: 'write', off: 512 * KiB + 100, len: 100 * KiB }, // rounds out to 512k..640k
  ]);
  const dirty = await nbdBitmapExtents(img.path, 'qcow2', 'known', dir);
  assert.deepEqual(dirty, [
    { start: 64 * KiB, length: 64 * KiB },
    { start: 512 * KiB, length: 128 * KiB },
  ]);
});

test('probe: qemu-nbd 7.2 refuses to export a bitmap left in-use by kill -9', async () => {
  const c = cases.find((x) => x.name === 'inuse-qemu-io')!;
  const bm = c.expectedBitmaps.find((b) => b.inUse)!;
  await assert.rejects(nbdBitmapExtents(bm.layer, 'qcow2', bm.name, c.dir), /inconsistent/);
});

test('map past the end of a shorter backing: depth of the layer above it, present false (block/io.c)', () => {
  // QEMU (bdrv_co_block_status): an area a layer does not allocate, lying past the end of its
  // backing, gets BDRV_BLOCK_ZERO *at that layer* and without BDRV_BLOCK_ALLOCATED, so qemu-img map
  // stops there: depth = that layer, present = false, zero = true.
  const dir = path.join(root, 'short');
  const base = Img.qcow2(path.join(dir, 'base.qcow2'), 1 * MiB);
  const top = Img.qcow2(path.join(dir, 'top.qcow2'), 2 * MiB, { backing: base });
  const expected = [
    { start: 0, length: 1 * MiB, depth: 1, present: false, zero: true, data: false },
    { start: 1 * MiB, length: 1 * MiB, depth: 0, present: false, zero: true, data: false },
  ];
  assert.deepEqual(qemuMap(top.path), expected, 'QEMU itself');
  const chain = openChain(top.path);
  try {
    assert.deepEqual(readerMap(chain), expected, 'reader');
  } finally {
    chain.close();
  }
});

for (const c of cases) {
  describe(`case ${c.name}`, () => {
    let info: any[];
    let chain: Chain;
    beforeAll(() => {
      info = qemuInfoChain(c.top);
      chain = openChain(c.top);
    });
    afterAll(() => chain?.close());

    test('layers match qemu-img info --backing-chain and the construction', () => {
      assert.equal(chain.layers.length, info.length, 'layer count vs qemu-img info');
      assert.equal(chain.layers.length, c.layers.length, 'layer count vs construction');
      chain.layers.forEach((l, i) => {
        const q = info[i];
        const e = c.layers[i];
        const where = `layer ${i} (${path.basename(l.path)})`;
        assert.equal(l.path, path.resolve(q.filename), `${where}: path vs qemu filename`);
        assert.equal(l.path, e.path, `${where}: path vs construction`);
        if (i > 0) assert.equal(l.path, path.resolve(info[i - 1]['full-backing-filename']), `${where}: path vs full-backing-filename`);
        assert.equal(l.format, q.format, `${where}: format`);
        assert.equal(l.format, e.format, `${where}: format vs construction`);
        assert.equal(l.virtualSize, q['virtual-size'], `${where}: virtual size`);
        assert.equal(l.virtualSize, e.virtualSize, `${where}: virtual size vs construction`);
        assert.equal(l.header?.clusterSize ?? null, q['cluster-size'] ?? null, `${where}: cluster size`);
        if (e.clusterSize !== null) assert.equal(l.header?.clusterSize, e.clusterSize, `${where}: cluster size vs construction`);
        assert.equal(l.header?.version ?? null, versionOf(q), `${where}: qcow2 version`);
        assert.equal(l.header?.extendedL2 ?? false, q['format-specific']?.data?.['extended-l2'] ?? false, `${where}: extended L2`);
        assert.equal(l.backingFile, q['backing-filename'] ?? null, `${where}: backing string`);
        assert.equal(l.backingFormat, q['backing-filename-format'] ?? null, `${where}: backing format`);
        if (e.backingFile !== null || i === chain.layers.length - 1) {
          assert.equal(l.backingFile, e.backingFile, `${where}: backing string vs construction`);
          assert.equal(l.backingFormat, e.backingFormat, `${where}: backing format vs construction`);
        }
      });
    });

    test('chain allocation map matches qemu-img map --output=json', () => {
      assert.deepEqual(canon(readerMap(chain)), canon(qemuMap(c.top)));
    });

    test("each layer's own allocation matches qemu-img map of that layer", () => {
      const report = inspect(c.top);
      chain.layers.forEach((l, i) => {
        const expected = qemuLayerAllocation(l.path, l.format);
        assert.deepEqual(toExtents(allocationExtents(l)), expected, `allocation of ${path.basename(l.path)}`);
        assert.equal(report.layers[i].allocatedBytes, bytesOf(expected), `inspect allocatedBytes of ${path.basename(l.path)}`);
      });
    });

    test('bitmap names, granularities and flags match qemu-img info and the construction', () => {
      chain.layers.forEach((l, i) => {
        const qb = (info[i]['format-specific']?.data?.bitmaps ?? []) as { name: string; granularity: number; flags: string[] }[];
        const where = path.basename(l.path);
        assert.deepEqual(
          l.bitmaps.map((b) => b.name),
          qb.map((b) => b.name),
          `${where}: bitmap names in directory order`,
        );
        l.bitmaps.forEach((b, k) => {
          assert.equal(b.index, k, `${where}/${b.name}: index`);
          assert.equal(b.granularity, qb[k].granularity, `${where}/${b.name}: granularity`);
          const flags = [...(b.auto ? ['auto'] : []), ...(b.inUse ? ['in-use'] : [])];
          assert.deepEqual(sortFlags(flags), sortFlags(qb[k].flags), `${where}/${b.name}: flags`);
        });
        const expected = c.expectedBitmaps.filter((b) => b.layer === l.path);
        assert.deepEqual(
          l.bitmaps.map((b) => ({ name: b.name, granularity: b.granularity, recording: b.auto, inUse: b.inUse })),
          expected.map((b) => ({ name: b.name, granularity: b.granularity, recording: b.recording, inUse: b.inUse })),
          `${where}: bitmaps vs construction`,
        );
        for (const a of c.absentBitmaps.filter((x) => x.layer === l.path)) {
          assert.ok(!l.bitmaps.some((b) => b.name === a.name), `${where}: '${a.name}' existed only in the killed process`);
        }
      });
    });

    test('bitmap contents match qemu-nbd export and the construction', async () => {
      const report = inspect(c.top);
      for (const [i, l] of chain.layers.entries()) {
        for (const b of l.bitmaps) {
          const where = `${path.basename(l.path)}/${b.name}`;
          const exp = c.expectedBitmaps.find((x) => x.layer === l.path && x.name === b.name)!;
          if (b.inUse) {
            // QEMU will not hand out an inconsistent bitmap: there is nothing to compare with, and the
            // reader must not let it count (checkpoints built on it are 'unknown').
            assert.equal(exp.dirty, null);
            for (const cp of report.checkpoints.filter((x) => x.sources.some((s) => s.layer === l.path && s.bitmap === b.name))) {
              assert.equal(cp.state, 'unknown', `checkpoint ${cp.name} rests on in-use ${where}`);
            }
            continue;
          }
          const fromQemu = await nbdBitmapExtents(l.path, l.format, b.name, c.dir);
          const fromReader = toExtents(bitmapExtents(l, b));
          assert.deepEqual(fromReader, fromQemu, `${where}: contents vs qemu-nbd`);
          assert.deepEqual(fromReader, exp.dirty, `${where}: contents vs construction`);
          const inReport = report.layers[i].bitmaps.find((x) => x.name === b.name)!;
          assert.equal(inReport.dirtyBytes, bytesOf(fromQemu), `${where}: inspect dirtyBytes`);
          assert.deepEqual(inReport.flags, [...(b.auto ? ['auto'] : []), ...(b.inUse ? ['in-use'] : [])], `${where}: inspect flags`);
          assert.equal(totalBytes(bitmapExtents(l, b)), bytesOf(fromQemu));
        }
      }
    });
  });
}
