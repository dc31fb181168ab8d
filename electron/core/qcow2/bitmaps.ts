// Persistent dirty bitmaps (header extension 0x23852875): the directory, the bitmap tables and the
// bits themselves, streamed one cluster at a time into byte extents of the virtual disk.
import type { ImageFile } from './image-file.ts';
import { u64 } from './image-file.ts';
import type { Qcow2Header } from './header.ts';
import { AUTOCLEAR_BITMAPS } from './header.ts';
import { corrupt } from '../errors.ts';

export const BME_FLAG_IN_USE = 1 << 0;
export const BME_FLAG_AUTO = 1 << 1;
export const BME_FLAG_EXTRA_DATA_COMPATIBLE = 1 << 2;

// QEMU's ceilings (block/qcow2-bitmap.c).
const MAX_BITMAPS = 65535;
const MAX_DIRECTORY_BYTES = 64 * 1024 * 1024;
const MIN_GRANULARITY_BITS = 9;
const MAX_GRANULARITY_BITS = 31;
const MAX_NAME = 1023;
const TABLE_CHUNK_ENTRIES = 8192; // bitmap tables are read 64 KiB at a time

export interface BitmapEntry {
  name: string;
  index: number;
  tableOffset: number;
  tableSize: number;
  flags: number;
  type: number;
  granularityBits: number;
  granularity: number;
  inUse: boolean;
  auto: boolean;
  /** offset of this directory entry in the file, for error messages */
  entryOffset: number;
}

export function bitmapCount(virtualSize: number, granularity: number): number {
  return Math.ceil(virtualSize / granularity);
}

export function readBitmapDirectory(img: ImageFile, h: Qcow2Header): BitmapEntry[] {
  const f = img.path;
  const ext = h.bitmaps;
  if (!ext) return [];
  if (ext.count === 0 || ext.count > MAX_BITMAPS) throw corrupt(f, h.headerLength, `bitmap count ${ext.count}`);
  if (ext.directorySize === 0 || ext.directorySize > MAX_DIRECTORY_BYTES) {
    throw corrupt(f, h.headerLength, `bitmap directory size ${ext.directorySize}`);
  }
  if (ext.directoryOffset % h.clusterSize !== 0 || ext.directoryOffset === 0) {
    throw corrupt(f, ext.directoryOffset, 'bitmap directory offset not cluster aligned');
  }
  const dir = img.read(ext.directoryOffset, ext.directorySize, 'bitmap directory');
  const out: BitmapEntry[] = [];
  const names = new Set<string>();
  let pos = 0;
  for (let i = 0; i < ext.count; i++) {
    const at = ext.directoryOffset + pos;
    if (pos + 24 > dir.length) throw corrupt(f, at, `bitmap directory ends before entry ${i}`);
    const tableOffset = u64(dir, pos, f, at, 'bitmap table offset');
    const tableSize = dir.readUInt32BE(pos + 8);
    const flags = dir.readUInt32BE(pos + 12);
    const type = dir[pos + 16];
    const granularityBits = dir[pos + 17];
    const nameSize = dir.readUInt16BE(pos + 18);
    const extraSize = dir.readUInt32BE(pos + 20);
    const entryLen = Math.ceil((24 + extraSize + nameSize) / 8) * 8;
    if (pos + 24 + extraSize + nameSize > dir.length) throw corrupt(f, at, `bitmap directory entry ${i} overruns the directory`);
    if (nameSize === 0 || nameSize > MAX_NAME) throw corrupt(f, at + 18, `bitmap name length ${nameSize}`);
    if (granularityBits < MIN_GRANULARITY_BITS || granularityBits > MAX_GRANULARITY_BITS) {
      throw corrupt(f, at + 17, `bitmap granularity bits ${granularityBits}`);
    }
    if (flags & ~(BME_FLAG_IN_USE | BME_FLAG_AUTO | BME_FLAG_EXTRA_DATA_COMPATIBLE)) {
      throw corrupt(f, at + 12, `reserved bitmap flags 0x${flags.toString(16)}`);
    }
    const name = dir.toString('utf8', pos + 24 + extraSize, pos + 24 + extraSize + nameSize);
    if (names.has(name)) throw corrupt(f, at, `duplicate bitmap name '${name}'`);
    names.add(name);
    const granularity = 2 ** granularityBits;
    const expected = Math.ceil(bitmapCount(h.virtualSize, granularity) / (h.clusterSize * 8));
    if (tableSize !== expected) throw corrupt(f, at + 8, `bitmap '${name}' table has ${tableSize} entries, expected ${expected}`);
    if (tableOffset % h.clusterSize !== 0) throw corrupt(f, at, `bitmap '${name}' table offset not cluster aligned`);
    if (tableOffset + tableSize * 8 > img.size) throw corrupt(f, at, `bitmap '${name}' table lies past the end of the file`);
    out.push({
      name,
      index: i,
      tableOffset,
      tableSize,
      flags,
      type,
      granularityBits,
      granularity,
      inUse: (flags & BME_FLAG_IN_USE) !== 0,
      auto: (flags & BME_FLAG_AUTO) !== 0,
      entryOffset: at,
    });
    pos += entryLen;
  }
  return out;
}

/** true when a bitmap directory exists but QEMU would treat it as stale (autoclear bit cleared by an old writer). */
export function bitmapsStale(h: Qcow2Header): boolean {
  return h.bitmaps !== null && (h.autoclear & AUTOCLEAR_BITMAPS) === 0;
}

/** Runs of set bits, in bit numbers [start, end), merged and in order. */
export type BitRunSink = (startBit: number, endBit: number) => void;

export function forEachBitRun(img: ImageFile, h: Qcow2Header, bm: BitmapEntry, sink: BitRunSink): void {
  const f = img.path;
  const cs = h.clusterSize;
  const bitsPerCluster = cs * 8;
  const nbits = bitmapCount(h.virtualSize, bm.granularity);
  // Own ArrayBuffer (4-byte aligned for the word view), no larger than the bits of this disk need.
  const bufBytes = Math.min(cs, Math.ceil(nbits / 32) * 4);
  const data = new Uint8Array(bufBytes);
  const dataBuf = Buffer.from(data.buffer, 0, bufBytes);
  const words = new Uint32Array(data.buffer, 0, bufBytes >>> 2);
  let runStart = -1;

  const open = (bit: number) => {
    if (runStart < 0) runStart = bit;
  };
  const close = (bit: number) => {
    if (runStart >= 0) {
      sink(runStart, bit);
      runStart = -1;
    }
  };

  for (let t0 = 0; t0 < bm.tableSize; t0 += TABLE_CHUNK_ENTRIES) {
    const n = Math.min(TABLE_CHUNK_ENTRIES, bm.tableSize - t0);
    const table = img.read(bm.tableOffset + t0 * 8, n * 8, `bitmap '${bm.name}' table`);
    for (let k = 0; k < n; k++) {
      const t = t0 + k;
      const entryAt = bm.tableOffset + t * 8;
      const hi = table.readUInt32BE(k * 8);
      const lo = table.readUInt32BE(k * 8 + 4);
      if ((hi & 0xff000000) !== 0 || (lo & 0x1fe) !== 0) throw corrupt(f, entryAt, `bitmap '${bm.name}' table entry ${t} has reserved bits set`);
      const off = (hi & 0x00ffffff) * 0x100000000 + ((lo & 0xfffffe00) >>> 0);
      const firstBit = t * bitsPerCluster;
      const lastBit = Math.min(firstBit + bitsPerCluster, nbits);
      if (off === 0) {
        if (lo & 1) open(firstBit); // all ones, no data cluster
        else close(firstBit); // all zeroes
        continue;
      }
      if (lo & 1) throw corrupt(f, entryAt, `bitmap '${bm.name}' table entry ${t} has both an offset and the all-ones bit`);
      if (off % cs !== 0) throw corrupt(f, entryAt, `bitmap '${bm.name}' data cluster ${off} not aligned`);
      const bitsHere = lastBit - firstBit;
      const nWords = Math.ceil(bitsHere / 32);
      // Read only the bytes that hold bits of this disk (the last cluster is usually partial).
      if (off + Math.ceil(bitsHere / 8) > img.size) throw corrupt(f, entryAt, `bitmap '${bm.name}' data cluster at ${off} past end of file`);
      const need = Math.min(cs, nWords * 4, img.size - off);
      if (need < nWords * 4) data.fill(0, need, nWords * 4);
      img.readInto(dataBuf, off, need, `bitmap '${bm.name}' data cluster`);
      for (let w = 0; w < nWords; w++) {
        const v = words[w];
        const wBit = firstBit + w * 32;
        // Whole-word fast paths; bits past nbits in the last word are ignored below.
        if (v === 0) {
          close(wBit);
          continue;
        }
        if (v === 0xffffffff && wBit + 32 <= lastBit) {
          open(wBit);
          continue;
        }
        for (let b = 0; b < 32; b++) {
          const bit = wBit + b;
          if (bit >= lastBit) break;
          // LSB-first within each byte; the word view is little-endian on every host Node runs on.
          if (data[(w << 2) + (b >>> 3)] & (1 << (b & 7))) open(bit);
          else close(bit);
        }
      }
    }
  }
  close(nbits);
}
