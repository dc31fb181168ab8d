// qcow2 header (v2 and v3) and header extensions, validated before anything else trusts them.
// Layout: docs/interop/qcow2.txt in the QEMU tree.
import { ImageFile, u64 } from './image-file.ts';
import { StrataError, corrupt, unsupported } from '../errors.ts';

export const QCOW2_MAGIC = 0x514649fb; // "QFI\xfb"

export const EXT_END = 0x00000000;
export const EXT_BACKING_FORMAT = 0xe2792aca;
export const EXT_FEATURE_TABLE = 0x6803f857;
export const EXT_BITMAPS = 0x23852875;
export const EXT_ENCRYPTION = 0x0537be77;
export const EXT_DATA_FILE = 0x44415441;

export const INCOMPAT_DIRTY = 1 << 0;
export const INCOMPAT_CORRUPT = 1 << 1;
export const INCOMPAT_DATA_FILE = 1 << 2;
export const INCOMPAT_COMPRESSION = 1 << 3;
export const INCOMPAT_EXTL2 = 1 << 4;
const INCOMPAT_KNOWN = INCOMPAT_DIRTY | INCOMPAT_CORRUPT | INCOMPAT_DATA_FILE | INCOMPAT_COMPRESSION | INCOMPAT_EXTL2;

export const AUTOCLEAR_BITMAPS = 1 << 0;

// QEMU's own ceilings (block/qcow2.h). Anything above is refused before any allocation.
const MAX_L1_BYTES = 32 * 1024 * 1024;
const MAX_BACKING_NAME = 1023;

export interface BitmapsExtension {
  count: number;
  directorySize: number;
  directoryOffset: number;
}

export interface FeatureName {
  type: 'incompatible' | 'compatible' | 'autoclear' | number;
  bit: number;
  name: string;
}

export interface Qcow2Header {
  version: 2 | 3;
  clusterBits: number;
  clusterSize: number;
  virtualSize: number;
  l1Size: number;
  l1Offset: number;
  refcountTableOffset: number;
  nbSnapshots: number;
  incompatible: number;
  compatible: number;
  autoclear: number;
  refcountOrder: number;
  headerLength: number;
  compressionType: 'zlib' | 'zstd';
  extendedL2: boolean;
  /** bytes per L2 entry: 8, or 16 with extended L2 */
  l2EntrySize: number;
  l2Entries: number;
  backingFile: string | null;
  backingFormat: string | null;
  bitmaps: BitmapsExtension | null;
  featureNames: FeatureName[];
}

export function isQcow2(buf: Buffer): boolean {
  return buf.length >= 4 && buf.readUInt32BE(0) === QCOW2_MAGIC;
}

export function readHeader(img: ImageFile): Qcow2Header {
  const f = img.path;
  if (img.size < 72) throw corrupt(f, 0, `file is ${img.size} bytes, shorter than a qcow2 header`);
  const h = img.read(0, Math.min(img.size, 112), 'header');
  if (h.readUInt32BE(0) !== QCOW2_MAGIC) {
    throw new StrataError('E_NOT_QCOW2', `${f}: not a qcow2 image (bad magic)`, { file: f, offset: 0 });
  }
  const version = h.readUInt32BE(4);
  if (version !== 2 && version !== 3) throw unsupported(f, `qcow2 version ${version}`);
  const backingOffset = u64(h, 8, f, 8, 'backing file offset');
  const backingSize = h.readUInt32BE(16);
  const clusterBits = h.readUInt32BE(20);
  if (clusterBits < 9 || clusterBits > 21) throw corrupt(f, 20, `cluster_bits ${clusterBits} outside 9..21`);
  const clusterSize = 2 ** clusterBits;
  const virtualSize = u64(h, 24, f, 24, 'virtual size'); // u64() refuses anything past 2^53
  const cryptMethod = h.readUInt32BE(32);
  if (cryptMethod !== 0) throw unsupported(f, `encrypted image (crypt_method ${cryptMethod})`);
  const l1Size = h.readUInt32BE(36);
  const l1Offset = u64(h, 40, f, 40, 'L1 table offset');
  const refcountTableOffset = u64(h, 48, f, 48, 'refcount table offset');
  const nbSnapshots = h.readUInt32BE(60);

  let incompatible = 0;
  let compatible = 0;
  let autoclear = 0;
  let refcountOrder = 4;
  let headerLength = 72;
  let compressionType: 'zlib' | 'zstd' = 'zlib';
  if (version === 3) {
    if (img.size < 104) throw corrupt(f, 0, 'v3 header truncated');
    // Feature bits above 31 are reserved; a set one is an unknown feature.
    if (h.readUInt32BE(72) !== 0) throw unsupported(f, 'unknown incompatible feature bits (high word)');
    incompatible = h.readUInt32BE(76);
    compatible = h.readUInt32BE(84);
    autoclear = h.readUInt32BE(92);
    refcountOrder = h.readUInt32BE(96);
    headerLength = h.readUInt32BE(100);
    if (headerLength < 104 || headerLength > clusterSize) {
      throw corrupt(f, 100, `header_length ${headerLength}`);
    }
    if (refcountOrder > 6) throw corrupt(f, 96, `refcount_order ${refcountOrder}`);
    if (incompatible & ~INCOMPAT_KNOWN) throw unsupported(f, `unknown incompatible features 0x${(incompatible & ~INCOMPAT_KNOWN).toString(16)}`);
    if (incompatible & INCOMPAT_DATA_FILE) throw unsupported(f, 'external data file');
    if (incompatible & INCOMPAT_COMPRESSION) {
      if (headerLength <= 104) throw corrupt(f, 104, 'compression type feature set but header has no compression type field');
      const ct = h[104];
      if (ct === 0) compressionType = 'zlib';
      else if (ct === 1) compressionType = 'zstd';
      else throw unsupported(f, `compression type ${ct}`);
    }
  }
  const extendedL2 = (incompatible & INCOMPAT_EXTL2) !== 0;
  if (extendedL2 && clusterBits < 14) throw corrupt(f, 76, 'extended L2 needs clusters of at least 16 KiB');
  const l2EntrySize = extendedL2 ? 16 : 8;
  const l2Entries = clusterSize / l2EntrySize;

  // L1 must cover the disk and stay within QEMU's ceiling.
  const needL1 = Math.ceil(virtualSize / (clusterSize * l2Entries));
  if (l1Size < needL1) throw corrupt(f, 36, `L1 table has ${l1Size} entries, the disk needs ${needL1}`);
  if (l1Size * 8 > MAX_L1_BYTES) throw corrupt(f, 36, `L1 table of ${l1Size} entries exceeds QEMU's limit`);
  if (l1Size > 0) {
    if (l1Offset % clusterSize !== 0) throw corrupt(f, 40, `L1 table offset ${l1Offset} not cluster aligned`);
    if (l1Offset + l1Size * 8 > img.size) throw corrupt(f, 40, `L1 table (${l1Size * 8} bytes at ${l1Offset}) past end of file`);
  }

  let backingFile: string | null = null;
  // A zero-length name means no backing, as QEMU reads it.
  if (backingOffset !== 0 && backingSize !== 0) {
    if (backingSize > MAX_BACKING_NAME) throw corrupt(f, 16, `backing file name length ${backingSize}`);
    if (backingOffset + backingSize > clusterSize) throw corrupt(f, 8, 'backing file name outside the header cluster');
    backingFile = img.read(backingOffset, backingSize, 'backing file name').toString('utf8');
    if (backingFile.includes('\0')) throw corrupt(f, backingOffset, 'backing file name contains NUL');
  }

  // Header extensions follow the header, inside the first cluster.
  let backingFormat: string | null = null;
  let bitmaps: BitmapsExtension | null = null;
  const featureNames: FeatureName[] = [];
  const extLimit = Math.min(clusterSize, img.size, backingOffset !== 0 && backingSize !== 0 ? backingOffset : clusterSize);
  let pos = headerLength;
  // Extensions almost always fit in the first 4 KiB; read the whole header cluster only if not.
  let area = img.read(0, Math.min(4096, extLimit), 'header');
  const need = (end: number) => {
    if (end > area.length && area.length < extLimit) area = img.read(0, extLimit, 'header cluster');
  };
  for (;;) {
    if (pos + 8 > extLimit) {
      // v2 images may end right after the header with no end marker.
      if (version === 2 && pos >= extLimit) break;
      throw corrupt(f, pos, 'header extensions run past the header cluster');
    }
    need(pos + 8);
    const type = area.readUInt32BE(pos);
    const len = area.readUInt32BE(pos + 4);
    if (type === EXT_END) break;
    const data = pos + 8;
    if (data + len > extLimit) throw corrupt(f, pos, `header extension 0x${type.toString(16)} of ${len} bytes overruns the header cluster`);
    need(data + len);
    switch (type) {
      case EXT_BACKING_FORMAT:
        backingFormat = area.toString('utf8', data, data + len);
        break;
      case EXT_FEATURE_TABLE:
        for (let e = data; e + 48 <= data + len; e += 48) {
          const t = area[e];
          const name = area.toString('utf8', e + 2, e + 48).replace(/\0.*$/s, '');
          featureNames.push({ type: t === 0 ? 'incompatible' : t === 1 ? 'compatible' : t === 2 ? 'autoclear' : t, bit: area[e + 1], name });
        }
        break;
      case EXT_BITMAPS: {
        if (len < 24) throw corrupt(f, pos, `bitmaps extension of ${len} bytes`);
        const count = area.readUInt32BE(data);
        const directorySize = u64(area, data + 8, f, data + 8, 'bitmap directory size');
        const directoryOffset = u64(area, data + 16, f, data + 16, 'bitmap directory offset');
        bitmaps = { count, directorySize, directoryOffset };
        break;
      }
      case EXT_ENCRYPTION:
        throw unsupported(f, 'encrypted image (LUKS header extension)');
      case EXT_DATA_FILE:
        throw unsupported(f, 'external data file');
      default:
        break; // unknown extensions are skippable by definition
    }
    pos = data + Math.ceil(len / 8) * 8;
  }

  return {
    version: version as 2 | 3,
    clusterBits,
    clusterSize,
    virtualSize,
    l1Size,
    l1Offset,
    refcountTableOffset,
    nbSnapshots,
    incompatible,
    compatible,
    autoclear,
    refcountOrder,
    headerLength,
    compressionType,
    extendedL2,
    l2EntrySize,
    l2Entries,
    backingFile,
    backingFormat,
    bitmaps,
    featureNames,
  };
}
