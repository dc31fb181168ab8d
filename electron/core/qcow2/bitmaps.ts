// Persistent dirty bitmaps (header extension 0x23852875): the directory, the bitmap tables and the
// bits themselves, streamed one cluster at a time into byte extents of the virtual disk.
import type { ImageFile } from './image-file.ts';
import { u64 } from './image-file.ts';
import type { Qcow2Header } from './header.ts';
import { checkBitmapsExtension, type BitmapsExtension } from './header.ts';
import { StrataError, badField, corrupt, pastEnd } from '../errors.ts';

export const BME_FLAG_IN_USE = 1 << 0;
export const BME_FLAG_AUTO = 1 << 1;

// QEMU 7.2's ceilings (block/qcow2-bitmap.c, check_dir_entry).
const MAX_TABLE_ENTRIES = 0x8000000; // BME_MAX_TABLE_SIZE
const MAX_PHYS_BYTES = 0x20000000; // BME_MAX_PHYS_SIZE
const MIN_GRANULARITY_BITS = 9;
const MAX_GRANULARITY_BITS = 31;
const MAX_NAME = 1023;
const RESERVED_FLAGS = ~(BME_FLAG_IN_USE | BME_FLAG_AUTO) >>> 0; // BME_RESERVED_FLAGS
const TYPE_DIRTY_TRACKING = 1;
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

/**
 * The bitmap directory, checked as QEMU's bitmap_list_load() and check_dir_entry() check it when
 * they load the bitmaps at open. A stale directory (autoclear bit clear) is one QEMU ignores: it is
 * shown when it reads cleanly, and reads as no bitmaps when it does not.
 */
export function readBitmapDirectory(img: ImageFile, h: Qcow2Header): BitmapEntry[] {
  if (h.bitmaps) return parseDirectory(img, h, h.bitmaps);
  if (!h.staleBitmaps) return [];
  try {
    return parseDirectory(img, h, checkBitmapsExtension(img.path, h.clusterSize, h.staleBitmaps.data, h.staleBitmaps.at));
  } catch (e) {
    if (e instanceof StrataError) return [];
    throw e;
  }
}

function parseDirectory(img: ImageFile, h: Qcow2Header, ext: BitmapsExtension): BitmapEntry[] {
  const f = img.path;
  if (ext.directorySize === 0) throw badField(f, 'bitmaps extension field bitmap_directory_size', ext.at + 8, 'is 0');
  // Size checked (at most 64 MiB); zeroes past the end of the file, as QEMU reads it.
  const dir = img.readPadded(ext.directoryOffset, ext.directorySize, 'bitmap directory');
  const out: BitmapEntry[] = [];
  const names = new Set<string>();
  // A directory whose entries do not fill it exactly (QEMU: "Broken bitmap directory", "More/Less
  // bitmaps found than specified") is blamed on the extension field that disagrees with them.
  const sizeField = (why: string) =>
    badField(f, 'bitmaps extension field bitmap_directory_size', ext.at + 8, `is ${ext.directorySize}, but ${why}`);
  const countField = (why: string) => badField(f, 'bitmaps extension field nb_bitmaps', ext.at, `is ${ext.count}, but ${why}`);
  const field = (i: number, name: string) => `bitmap directory entry ${i} field ${name}`;
  let pos = 0;
  let i = 0;
  for (; pos < dir.length; i++) {
    const at = ext.directoryOffset + pos;
    if (pos + 24 > dir.length) throw sizeField(`entry ${i} at offset ${at} would run past the directory's end`);
    if (i >= ext.count) throw countField(`the directory holds more entries (entry ${i} at offset ${at})`);
    const tableOffset = dir.readBigUInt64BE(pos);
    const tableSize = dir.readUInt32BE(pos + 8);
    const flags = dir.readUInt32BE(pos + 12);
    const type = dir[pos + 16];
    const granularityBits = dir[pos + 17];
    const nameSize = dir.readUInt16BE(pos + 18);
    const extraSize = dir.readUInt32BE(pos + 20);
    const entryLen = Math.ceil((24 + extraSize + nameSize) / 8) * 8;
    if (pos + entryLen > dir.length) throw sizeField(`entry ${i} at offset ${at} (${entryLen} bytes) runs past the directory's end`);
    if (extraSize !== 0) throw badField(f, field(i, 'extra_data_size'), at + 20, `is ${extraSize}; QEMU supports no extra data`);
    const name = dir.toString('utf8', pos + 24, pos + 24 + nameSize);
    // check_dir_entry()
    if (tableSize === 0 || tableSize > MAX_TABLE_ENTRIES) {
      throw badField(f, field(i, 'bitmap_table_size'), at + 8, `is ${tableSize}, QEMU's range is 1..${MAX_TABLE_ENTRIES}`);
    }
    if (tableOffset === 0n || tableOffset % BigInt(h.clusterSize) !== 0n) {
      throw badField(f, field(i, 'bitmap_table_offset'), at, `is ${tableOffset}, not a non-zero multiple of the cluster size ${h.clusterSize}`);
    }
    if (granularityBits < MIN_GRANULARITY_BITS || granularityBits > MAX_GRANULARITY_BITS) {
      throw badField(f, field(i, 'granularity_bits'), at + 17, `is ${granularityBits}, QEMU's range is ${MIN_GRANULARITY_BITS}..${MAX_GRANULARITY_BITS}`);
    }
    if (flags & RESERVED_FLAGS) throw badField(f, field(i, 'flags'), at + 12, `is 0x${flags.toString(16)}: reserved bits 0x${(flags & RESERVED_FLAGS).toString(16)} set`);
    if (nameSize > MAX_NAME) throw badField(f, field(i, 'name_size'), at + 18, `is ${nameSize}, QEMU's limit is ${MAX_NAME}`);
    if (type !== TYPE_DIRTY_TRACKING) throw badField(f, field(i, 'type'), at + 16, `is ${type}, QEMU knows only 1 (dirty tracking)`);
    const physBytes = tableSize * h.clusterSize;
    if (physBytes > MAX_PHYS_BYTES) {
      throw badField(f, field(i, 'bitmap_table_size'), at + 8, `is ${tableSize}: ${physBytes} bytes of bitmap data, QEMU's limit is ${MAX_PHYS_BYTES}`);
    }
    // Strata's own rules beyond QEMU's: a name, unique, and a table exactly as large as the disk
    // needs (QEMU requires that too when it loads a bitmap that is not in use).
    if (nameSize === 0) throw badField(f, field(i, 'name_size'), at + 18, 'is 0: a bitmap needs a name');
    if (names.has(name)) throw corrupt(f, at, `duplicate bitmap name '${name}'`);
    names.add(name);
    const granularity = 2 ** granularityBits;
    const expected = Math.ceil(bitmapCount(h.virtualSize, granularity) / (h.clusterSize * 8));
    if (tableSize !== expected) throw badField(f, field(i, 'bitmap_table_size'), at + 8, `of bitmap '${name}' is ${tableSize}, the disk needs ${expected}`);
    const offset = u64(dir, pos, f, at, 'bitmap table offset');
    if (offset + tableSize * 8 > img.size) throw pastEnd(f, at, `bitmap '${name}' table lies past the end of the file`);
    out.push({
      name,
      index: i,
      tableOffset: offset,
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
  if (i !== ext.count) throw countField(`the directory holds ${i} entries`);
  return out;
}

/** true when a bitmap directory exists but QEMU would treat it as stale (autoclear bit cleared by an old writer). */
export function bitmapsStale(h: Qcow2Header): boolean {
  return h.staleBitmaps !== null;
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
