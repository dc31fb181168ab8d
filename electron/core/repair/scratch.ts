// A brand-new scratch qcow2, written by Strata itself into its own runtime folder, that holds nothing
// but one persistent bitmap whose set bits are given extents: the source `qemu-img bitmap --merge`
// copies into a user's layer. It is never a user's image (the user's file is only ever written by
// QEMU). Streamed one bitmap cluster at a time: memory stays at a few clusters plus the table, and
// clusters that are all zeros or all ones cost no data (bitmap table entries 0 and 1).
//
// Layout (64 KiB clusters, qcow2 v3, 16-bit refcounts): header with the bitmaps extension, the
// refcount table, the refcount blocks, an empty L1 table, the bitmap directory, the bitmap table,
// then the bitmap's data clusters.
import fs from 'node:fs';
import type { ExtentList } from '../extents.ts';
import { StrataError } from '../errors.ts';

const CB = 16;
const C = 1 << CB;
const BITMAPS_EXT = 0x23852875;
const REFS_PER_BLOCK = C / 2;

function u64(buf: Buffer, off: number, v: number): void {
  buf.writeUInt32BE(Math.floor(v / 0x100000000), off);
  buf.writeUInt32BE(v >>> 0, off + 4);
}

/**
 * Writes `file` (created new; refused if it exists) with a disabled persistent bitmap `name` of
 * `granularity` over a disk of `virtualSize` bytes, marking every granule `marked` touches.
 */
export function writeBitmapScratch(file: string, virtualSize: number, name: string, granularity: number, marked: ExtentList): void {
  if (virtualSize % 512 !== 0 || granularity < 512 || (granularity & (granularity - 1)) !== 0) {
    throw new StrataError('E_BAD_INPUT', `${file}: bad scratch geometry (size ${virtualSize}, granularity ${granularity})`, { file });
  }
  const nbits = Math.ceil(virtualSize / granularity);
  const bitsPerCluster = C * 8;
  const tableEntries = Math.ceil(nbits / bitsPerCluster);
  // Pass 1: which bitmap clusters are all zeros (0), all ones (1), or partial (need a data cluster).
  const kind = new Uint8Array(tableEntries); // 0 zeros, 1 ones, 2 partial
  const g = granularity;
  const bitOf = (byte: number) => Math.floor(byte / g);
  for (let i = 0; i < marked.count; i++) {
    const b0 = bitOf(marked.starts[i]);
    const b1 = Math.min(nbits, Math.ceil(marked.ends[i] / g));
    for (let t = Math.floor(b0 / bitsPerCluster); t * bitsPerCluster < b1; t++) {
      const lo = t * bitsPerCluster;
      const hi = Math.min(nbits, lo + bitsPerCluster);
      const full = b0 <= lo && b1 >= hi;
      if (full && kind[t] === 0) kind[t] = 1;
      else if (!full) kind[t] = 2;
    }
  }
  // A partial cluster next to a full one from another extent: recheck partials by exact coverage below.
  let data = 0;
  for (let t = 0; t < tableEntries; t++) if (kind[t] === 2) data++;
  const l1Size = Math.ceil(virtualSize / (C * (C / 8)));
  const l1Clusters = Math.max(1, Math.ceil((l1Size * 8) / C));
  const tableClusters = Math.max(1, Math.ceil((tableEntries * 8) / C));
  let refBlocks = 1;
  let total = 0;
  for (;;) {
    total = 1 + 1 + refBlocks + l1Clusters + 1 + tableClusters + data;
    const need = Math.ceil(total / REFS_PER_BLOCK);
    if (need <= refBlocks) break;
    refBlocks = need;
  }
  if (refBlocks > C / 8) throw new StrataError('E_BAD_INPUT', `${file}: scratch bitmap too large`, { file });
  const at = (cluster: number) => cluster * C;
  const reftableAt = at(1);
  const refblocksAt = at(2);
  const l1At = at(2 + refBlocks);
  const dirAt = at(2 + refBlocks + l1Clusters);
  const tableAt = dirAt + C;
  const dataAt = tableAt + tableClusters * C;

  const fd = fs.openSync(file, 'wx', 0o600);
  try {
    // header
    const h = Buffer.alloc(C);
    h.write('QFI\xfb', 0, 'latin1');
    h.writeUInt32BE(3, 4);
    h.writeUInt32BE(CB, 20);
    u64(h, 24, virtualSize);
    h.writeUInt32BE(l1Size, 36);
    u64(h, 40, l1At);
    u64(h, 48, reftableAt);
    h.writeUInt32BE(1, 56);
    u64(h, 88, 1); // autoclear: bitmaps extension valid
    h.writeUInt32BE(4, 96); // refcount_order: 16-bit
    h.writeUInt32BE(104, 100); // header_length
    const nameBytes = Buffer.from(name, 'utf8');
    const entryLen = Math.ceil((24 + nameBytes.length) / 8) * 8;
    let p = 104;
    h.writeUInt32BE(BITMAPS_EXT, p);
    h.writeUInt32BE(24, p + 4);
    h.writeUInt32BE(1, p + 8); // nb_bitmaps
    u64(h, p + 16, entryLen);
    u64(h, p + 24, dirAt);
    p += 32;
    h.writeUInt32BE(0, p); // end of extensions
    fs.writeSync(fd, h, 0, C, 0);
    // refcount table and blocks: every cluster of the file has refcount 1
    const rt = Buffer.alloc(C);
    for (let k = 0; k < refBlocks; k++) u64(rt, k * 8, refblocksAt + k * C);
    fs.writeSync(fd, rt, 0, C, reftableAt);
    for (let k = 0; k < refBlocks; k++) {
      const rb = Buffer.alloc(C);
      for (let j = 0; j < REFS_PER_BLOCK && k * REFS_PER_BLOCK + j < total; j++) rb.writeUInt16BE(1, j * 2);
      fs.writeSync(fd, rb, 0, C, refblocksAt + k * C);
    }
    fs.writeSync(fd, Buffer.alloc(l1Clusters * C), 0, l1Clusters * C, l1At);
    // bitmap directory: one disabled bitmap
    const d = Buffer.alloc(C);
    u64(d, 0, tableAt);
    d.writeUInt32BE(tableEntries, 8);
    d.writeUInt32BE(0, 12); // flags: not in use, not recording
    d.writeUInt8(1, 16); // type: dirty tracking
    d.writeUInt8(Math.log2(granularity), 17);
    d.writeUInt16BE(nameBytes.length, 18);
    d.writeUInt32BE(0, 20);
    nameBytes.copy(d, 24);
    fs.writeSync(fd, d, 0, C, dirAt);
    // pass 2: the data clusters, one at a time, and the table
    const table = Buffer.alloc(tableClusters * C);
    const buf = Buffer.alloc(C);
    let next = 0;
    let e = 0;
    for (let t = 0; t < tableEntries; t++) {
      if (kind[t] === 0) continue;
      if (kind[t] === 1) {
        u64(table, t * 8, 1);
        continue;
      }
      const lo = t * bitsPerCluster;
      const hi = Math.min(nbits, lo + bitsPerCluster);
      buf.fill(0);
      while (e < marked.count && Math.ceil(marked.ends[e] / g) <= lo) e++;
      for (let k = e; k < marked.count; k++) {
        const b0 = Math.max(lo, bitOf(marked.starts[k]));
        if (b0 >= hi) break;
        const b1 = Math.min(hi, Math.ceil(marked.ends[k] / g));
        setBits(buf, b0 - lo, b1 - lo);
      }
      const off = dataAt + next * C;
      next++;
      fs.writeSync(fd, buf, 0, C, off);
      u64(table, t * 8, off);
    }
    fs.writeSync(fd, table, 0, table.length, tableAt);
    // the file ends at the last cluster the refcounts count
    fs.ftruncateSync(fd, total * C);
  } catch (err) {
    fs.closeSync(fd);
    fs.rmSync(file, { force: true });
    throw err;
  }
  fs.closeSync(fd);
}

/** Sets bits [a, b) of buf, bit 0 = least significant bit of byte 0 (qcow2 bitmap order). */
function setBits(buf: Buffer, a: number, b: number): void {
  while (a < b && a & 7) {
    buf[a >>> 3] |= 1 << (a & 7);
    a++;
  }
  if (b - a >= 8) {
    buf.fill(0xff, a >>> 3, b >>> 3);
    a = b & ~7;
  }
  while (a < b) {
    buf[a >>> 3] |= 1 << (a & 7);
    a++;
  }
}
