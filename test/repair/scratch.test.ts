// The scratch qcow2 Strata writes itself: QEMU must find it consistent and read back exactly the
// bits asked for, whatever the geometry (all-zero, all-one and partial bitmap clusters).
import fs from 'node:fs';
import path from 'node:path';
import { test, expect } from 'vitest';
import { writeBitmapScratch } from '../../electron/core/repair/scratch.ts';
import { fromExtents, toExtents } from '../../electron/core/extents.ts';
import { openLayer, bitmapExtents } from '../../electron/core/qcow2/chain.ts';
import { run, qemuImg } from '../helpers/qemu.ts';
import { tmp } from './scenarios.ts';

const cases: { name: string; size: number; g: number; ext: { start: number; length: number }[] }[] = [
  { name: 'the seed example', size: 512 * 1024, g: 65536, ext: [{ start: 196608, length: 65536 }, { start: 327680, length: 131072 }] },
  { name: 'empty', size: 100 * 2 ** 20, g: 65536, ext: [] },
  { name: '512-byte granularity, whole and partial clusters', size: 8 * 2 ** 30, g: 512, ext: [{ start: 0, length: 2 ** 30 }, { start: 2 ** 30 + 512, length: 4096 }, { start: 5 * 2 ** 30, length: 2 ** 30 + 1024 }] },
  { name: '1 TiB, 16384 runs', size: 2 ** 40, g: 65536, ext: Array.from({ length: 16384 }, (_, i) => ({ start: i * 2 ** 26, length: 65536 })) },
  { name: 'a size not a multiple of the granularity', size: 3 * 65536 + 512, g: 65536, ext: [{ start: 3 * 65536, length: 512 }] },
];

for (const c of cases) {
  test(`scratch bitmap: ${c.name}`, () => {
    const f = path.join(tmp(), 's.qcow2');
    writeBitmapScratch(f, c.size, 'strata-allocation', c.g, fromExtents(c.ext));
    run('qemu-img', ['check', '-q', f]);
    const info = JSON.parse(qemuImg('info', '--output=json', f));
    expect(info['format-specific'].data.bitmaps).toEqual([{ flags: [], name: 'strata-allocation', granularity: c.g }]);
    const l = openLayer(f, 'qcow2');
    try {
      expect(toExtents(bitmapExtents(l, l.bitmaps[0]))).toEqual(c.ext);
    } finally {
      l.file.close();
    }
    expect(() => writeBitmapScratch(f, c.size, 'x', c.g, fromExtents([]))).toThrow(); // never overwrites
    expect(fs.statSync(f).size).toBeLessThan(64 * 2 ** 20);
  });
}
