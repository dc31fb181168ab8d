// Allocation map of one qcow2 layer from its L1/L2 tables: which parts of the virtual disk this
// layer defines (data, compressed data, or reads-as-zero) and which fall through to the backing.
// One L2 table in memory at a time, so memory stays at one cluster whatever the header claims.
import type { ImageFile } from './image-file.ts';
import type { Qcow2Header } from './header.ts';
import { corrupt } from '../errors.ts';

export const UNALLOCATED = 0;
export const DATA = 1;
export const ZERO = 2;
export type AllocKind = typeof UNALLOCATED | typeof DATA | typeof ZERO;

/** Receives merged runs covering [0, virtualSize) in order. */
export type AllocSink = (start: number, length: number, kind: AllocKind) => void;

const OFFSET_MASK_HI = 0x00ffffff; // bits 32..55 of an L1/L2 entry
const OFFSET_MASK_LO = 0xfffffe00; // bits 9..31

function entryOffset(hi: number, lo: number): number {
  return (hi & OFFSET_MASK_HI) * 0x100000000 + ((lo & OFFSET_MASK_LO) >>> 0);
}

export function readL1(img: ImageFile, h: Qcow2Header): Buffer {
  return img.read(h.l1Offset, h.l1Size * 8, 'L1 table');
}

export function forEachAllocation(img: ImageFile, h: Qcow2Header, sink: AllocSink): void {
  const f = img.path;
  const cs = h.clusterSize;
  const perL2 = h.l2Entries;
  const bytesPerL2 = cs * perL2;
  const total = h.virtualSize;
  const nL1 = Math.ceil(total / bytesPerL2);
  const l1 = nL1 > 0 ? img.read(h.l1Offset, nL1 * 8, 'L1 table') : Buffer.alloc(0);
  // Own buffer (4-byte aligned) with a word view: empty entries are skipped a run at a time.
  const l2Bytes = new Uint8Array(cs);
  const l2 = Buffer.from(l2Bytes.buffer, 0, cs);
  const words = new Uint32Array(l2Bytes.buffer);
  const wordsPerEntry = h.l2EntrySize / 4;
  const emptyAt = (j: number): boolean => {
    const w = j * wordsPerEntry;
    for (let k = 0; k < wordsPerEntry; k++) if (words[w + k] !== 0) return false;
    return true;
  };
  const sub = cs / 32;
  const compressedShift = 62 - (h.clusterBits - 8); // bits below this hold the compressed host offset
  const l1End = h.l1Offset + h.l1Size * 8;

  let runStart = 0;
  let runKind: AllocKind = UNALLOCATED;
  let runEnd = 0;
  const emit = (start: number, len: number, kind: AllocKind) => {
    if (len <= 0) return;
    if (kind === runKind && start === runEnd) {
      runEnd += len;
      return;
    }
    if (runEnd > runStart) sink(runStart, runEnd - runStart, runKind);
    runStart = start;
    runEnd = start + len;
    runKind = kind;
  };

  for (let i = 0; i < nL1; i++) {
    const base = i * bytesPerL2;
    const hi = l1.readUInt32BE(i * 8);
    const lo = l1.readUInt32BE(i * 8 + 4);
    const l2Off = entryOffset(hi, lo);
    const span = Math.min(bytesPerL2, total - base);
    if (l2Off === 0) {
      emit(base, span, UNALLOCATED);
      continue;
    }
    const l1EntryAt = h.l1Offset + i * 8;
    if (l2Off % cs !== 0) throw corrupt(f, l1EntryAt, `L1[${i}] points to unaligned L2 table at ${l2Off}`);
    if (l2Off < cs) throw corrupt(f, l1EntryAt, `L1[${i}] points into the header cluster`);
    if (l2Off < l1End && l2Off + cs > h.l1Offset) throw corrupt(f, l1EntryAt, `L1[${i}] points into the L1 table`);
    const clusters = Math.ceil(span / cs);
    // Only the entries that map the disk: a small image needs a few bytes of each L2 table.
    img.readInto(l2, l2Off, clusters * h.l2EntrySize, `L2 table ${i}`);
    for (let j = 0; j < clusters; j++) {
      if (emptyAt(j)) {
        let k = j + 1;
        while (k < clusters && emptyAt(k)) k++;
        const s0 = base + j * cs;
        emit(s0, Math.min(base + k * cs, total) - s0, UNALLOCATED);
        j = k - 1;
        continue;
      }
      const at = j * h.l2EntrySize;
      const ehi = l2.readUInt32BE(at);
      const elo = l2.readUInt32BE(at + 4);
      const vStart = base + j * cs;
      const vLen = Math.min(cs, total - vStart);
      if (ehi & 0x40000000) {
        // Compressed: host offset in the low bits; validate it lies in the file.
        const hostOff = compressedShift >= 32
          ? (ehi & ((1 << (compressedShift - 32)) - 1)) * 0x100000000 + (elo >>> 0)
          : (elo >>> 0) & ((2 ** compressedShift) - 1);
        if (h.extendedL2 && (l2.readUInt32BE(at + 8) | l2.readUInt32BE(at + 12)) !== 0) {
          throw corrupt(f, l2Off + at, 'compressed cluster with a non-zero subcluster bitmap');
        }
        if (hostOff >= img.size) throw corrupt(f, l2Off + at, `compressed cluster at ${hostOff} past end of file`);
        emit(vStart, vLen, DATA);
        continue;
      }
      const hostOff = entryOffset(ehi, elo);
      if (hostOff !== 0 && hostOff % cs !== 0) throw corrupt(f, l2Off + at, `L2 entry points to unaligned cluster ${hostOff}`);
      if (hostOff !== 0 && hostOff >= img.size) {
        throw corrupt(f, l2Off + at, `L2 entry points to cluster ${hostOff} past end of file (${img.size})`);
      }
      if (!h.extendedL2) {
        // Bit 0 means "reads as zero" from v3 on; in v2 it is reserved and ignored.
        if (elo & 1 && h.version === 3) emit(vStart, vLen, ZERO);
        else emit(vStart, vLen, hostOff !== 0 ? DATA : UNALLOCATED);
        continue;
      }
      // Extended L2: 32 subclusters, bit k of the low word = allocated, bit k of the high word = zero.
      const zeroBits = l2.readUInt32BE(at + 8);
      const allocBits = l2.readUInt32BE(at + 12);
      if (allocBits & zeroBits) throw corrupt(f, l2Off + at + 8, 'subcluster both allocated and zero');
      if (allocBits !== 0 && hostOff === 0) throw corrupt(f, l2Off + at, 'allocated subclusters without a host cluster');
      if (allocBits === 0 && zeroBits === 0) {
        emit(vStart, vLen, UNALLOCATED);
        continue;
      }
      if (allocBits === 0xffffffff) {
        emit(vStart, vLen, DATA);
        continue;
      }
      for (let k = 0; k < 32; k++) {
        const s = vStart + k * sub;
        if (s >= total) break;
        const len = Math.min(sub, total - s);
        const bit = 1 << k;
        emit(s, len, allocBits & bit ? DATA : zeroBits & bit ? ZERO : UNALLOCATED);
      }
    }
  }
  if (runEnd > runStart) sink(runStart, runEnd - runStart, runKind);
}

/** Bytes of the virtual disk this layer defines (data or zero): what stops a read falling through. */
export function allocatedBytes(img: ImageFile, h: Qcow2Header): number {
  let n = 0;
  forEachAllocation(img, h, (_s, len, kind) => {
    if (kind !== UNALLOCATED) n += len;
  });
  return n;
}
