// qcow2 header (v2 and v3) and header extensions, validated before anything else trusts them.
// Layout: docs/interop/qcow2.txt in the QEMU tree.
import { ImageFile, u64 } from './image-file.ts';
import { StrataError, TRUNCATED_ADVICE, badField, corrupt } from '../errors.ts';

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

// QEMU 7.2's own ceilings (block/qcow2.h), checked before anything is allocated from a header value.
const MAX_L1_BYTES = 32 * 1024 * 1024; // QCOW_MAX_L1_SIZE
const MAX_REFTABLE_BYTES = 8 * 1024 * 1024; // QCOW_MAX_REFTABLE_SIZE
const MAX_SNAPSHOTS = 65536; // QCOW_MAX_SNAPSHOTS
const SNAPSHOT_HEADER_BYTES = 40; // sizeof(QCowSnapshotHeader)
const MAX_BACKING_NAME = 1023;
const MAX_BACKING_FORMAT = 15; // bs->backing_format is 16 bytes with its NUL
const MAX_BITMAPS = 65535; // QCOW2_MAX_BITMAPS
const MAX_BITMAP_DIRECTORY_BYTES = 1024 * MAX_BITMAPS; // QCOW2_MAX_BITMAP_DIRECTORY_SIZE
const BITMAPS_EXT_BYTES = 24;
const INT64_MAX = 2n ** 63n - 1n;
const INT_MAX = 2 ** 31 - 1;

export interface BitmapsExtension {
  count: number;
  directorySize: number;
  directoryOffset: number;
  /** file offset of the extension's data (nb_bitmaps) */
  at: number;
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
  /** may be past the file or beyond 2^53 (then imprecise): QEMU reads zeroes there */
  snapshotsOffset: number;
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
  /** the bitmaps extension, checked as QEMU checks it; null when absent or stale */
  bitmaps: BitmapsExtension | null;
  /** a bitmaps extension QEMU ignores (autoclear bit clear): its unchecked 24 bytes and their file offset */
  staleBitmaps: { data: Buffer; at: number } | null;
  featureNames: FeatureName[];
}

export function isQcow2(buf: Buffer): boolean {
  return buf.length >= 4 && buf.readUInt32BE(0) === QCOW2_MAGIC;
}

const hfield = (name: string) => `header field ${name}`;

/**
 * QEMU's qcow2_validate_table(): a table of `entries` entries of `entryLen` bytes at `offset`, no
 * larger than `maxBytes`, cluster aligned and not overflowing a signed 64-bit offset.
 */
function validateTable(
  f: string,
  cs: number,
  count: { name: string; at: number; value: number },
  offset: { name: string; at: number; value: bigint },
  entryLen: number,
  maxBytes: number,
): void {
  const maxEntries = Math.floor(maxBytes / entryLen);
  if (count.value > maxEntries) throw badField(f, hfield(count.name), count.at, `is ${count.value}, QEMU's limit is ${maxEntries}`);
  if (offset.value % BigInt(cs) !== 0n) {
    throw badField(f, hfield(offset.name), offset.at, `is ${offset.value}, not a multiple of the cluster size ${cs}`);
  }
  if (INT64_MAX - BigInt(count.value) * BigInt(entryLen) < offset.value) {
    throw badField(f, hfield(offset.name), offset.at, `is ${offset.value}: the table would end past 2^63`);
  }
}

/** QEMU's checks of the bitmaps extension (qcow2_read_extensions), given its 24 data bytes at file offset `at`. */
export function checkBitmapsExtension(f: string, cs: number, data: Buffer, at: number): BitmapsExtension {
  const count = data.readUInt32BE(0);
  if (count > MAX_BITMAPS) throw badField(f, 'bitmaps extension field nb_bitmaps', at, `is ${count}, QEMU's limit is ${MAX_BITMAPS}`);
  if (count === 0) throw badField(f, 'bitmaps extension field nb_bitmaps', at, 'is 0 (QEMU refuses an empty bitmaps extension)');
  const reserved = data.readUInt32BE(4);
  if (reserved !== 0) throw badField(f, 'bitmaps extension reserved field', at + 4, `is ${reserved}, must be 0`);
  const size = data.readBigUInt64BE(8);
  const offset = data.readBigUInt64BE(16);
  if (offset % BigInt(cs) !== 0n) {
    throw badField(f, 'bitmaps extension field bitmap_directory_offset', at + 16, `is ${offset}, not a multiple of the cluster size ${cs}`);
  }
  if (size > BigInt(MAX_BITMAP_DIRECTORY_BYTES)) {
    throw badField(f, 'bitmaps extension field bitmap_directory_size', at + 8, `is ${size}, QEMU's limit is ${MAX_BITMAP_DIRECTORY_BYTES}`);
  }
  return { count, directorySize: Number(size), directoryOffset: u64(data, 16, f, at + 16, 'bitmap directory offset'), at };
}

/** The string QEMU keeps from a stored name: up to the first NUL (pstrcpy). */
const cString = (b: Buffer) => {
  const nul = b.indexOf(0);
  return b.toString('utf8', 0, nul < 0 ? b.length : nul);
};

export function readHeader(img: ImageFile): Qcow2Header {
  const f = img.path;
  if (img.size < 72) throw corrupt(f, 0, `file is ${img.size} bytes, shorter than a qcow2 header`);
  // QEMU reads the 112-byte QCowHeader with zeroes past the end of the file.
  const h = img.readPadded(0, 112, 'header');
  if (h.readUInt32BE(0) !== QCOW2_MAGIC) {
    throw new StrataError('E_NOT_QCOW2', `${f}: not a qcow2 image (bad magic)`, { file: f, offset: 0 });
  }
  const version = h.readUInt32BE(4);
  if (version !== 2 && version !== 3) throw badField(f, hfield('version'), 4, `is ${version}, QEMU opens versions 2 and 3`, 'E_UNSUPPORTED');
  const backingOffset = h.readBigUInt64BE(8);
  const backingSize = h.readUInt32BE(16);
  const clusterBits = h.readUInt32BE(20);
  if (clusterBits < 9 || clusterBits > 21) throw badField(f, hfield('cluster_bits'), 20, `is ${clusterBits}, QEMU's range is 9..21`);
  const clusterSize = 2 ** clusterBits;
  const cs = BigInt(clusterSize);
  const virtualSize = u64(h, 24, f, 24, 'virtual size'); // u64() refuses anything past 2^53
  const cryptMethod = h.readUInt32BE(32);
  const l1Size = h.readUInt32BE(36);
  const l1OffsetRaw = h.readBigUInt64BE(40);
  const refcountTableOffsetRaw = h.readBigUInt64BE(48);
  const refcountTableClusters = h.readUInt32BE(56);
  const nbSnapshots = h.readUInt32BE(60);
  const snapshotsOffset = h.readBigUInt64BE(64);

  let incompatible = 0n;
  let compatible = 0;
  let autoclear = 0;
  let refcountOrder = 4;
  let headerLength = 72;
  if (version === 3) {
    if (img.size < 104) throw corrupt(f, 0, 'v3 header truncated');
    incompatible = h.readBigUInt64BE(72);
    compatible = h.readUInt32BE(84);
    autoclear = h.readUInt32BE(92);
    refcountOrder = h.readUInt32BE(96);
    headerLength = h.readUInt32BE(100);
    if (headerLength < 104) throw badField(f, hfield('header_length'), 100, `is ${headerLength}, QEMU's minimum for version 3 is 104`);
  }
  if (headerLength > clusterSize) throw badField(f, hfield('header_length'), 100, `is ${headerLength}, more than the cluster size ${clusterSize}`);
  if (backingOffset > cs) throw badField(f, hfield('backing_file_offset'), 8, `is ${backingOffset}, past the first cluster (${clusterSize} bytes)`);

  // Compression type (QEMU's validate_compression_type): the byte at 104 when the header is long
  // enough to hold it, else zlib; the incompatible bit must be set exactly when it is not zlib.
  const ctByte = headerLength > 104 ? h[104] : 0;
  if (ctByte !== 0 && ctByte !== 1) throw badField(f, hfield('compression_type'), 104, `is ${ctByte}, QEMU knows 0 (zlib) and 1 (zstd)`, 'E_UNSUPPORTED');
  const compressionBit = (incompatible & BigInt(INCOMPAT_COMPRESSION)) !== 0n;
  if (ctByte === 0 && compressionBit) {
    throw badField(f, hfield('incompatible_features'), 72, 'has the compression type bit (3) set, but the compression type is zlib');
  }
  if (ctByte !== 0 && !compressionBit) {
    throw badField(f, hfield('incompatible_features'), 72, 'lacks the compression type bit (3), but the compression type is zstd');
  }
  const compressionType: 'zlib' | 'zstd' = ctByte === 1 ? 'zstd' : 'zlib';

  const unknownIncompat = incompatible & ~BigInt(INCOMPAT_KNOWN);
  if (unknownIncompat !== 0n) {
    throw badField(f, hfield('incompatible_features'), 72, `has unknown feature bits 0x${unknownIncompat.toString(16)}`, 'E_UNSUPPORTED');
  }
  const incompat = Number(incompatible);
  if (incompat & INCOMPAT_DATA_FILE) throw badField(f, hfield('incompatible_features'), 72, 'has the external data file bit (2) set', 'E_UNSUPPORTED');
  const extendedL2 = (incompat & INCOMPAT_EXTL2) !== 0;
  if (extendedL2 && clusterBits < 14) {
    throw badField(f, hfield('cluster_bits'), 20, `is ${clusterBits}: with extended L2 the subclusters would be ${clusterSize / 32} bytes, QEMU's minimum is 512`);
  }
  if (refcountOrder > 6) throw badField(f, hfield('refcount_order'), 96, `is ${refcountOrder}, QEMU's limit is 6`);
  if (cryptMethod !== 0) {
    const what = cryptMethod === 1 ? 'AES' : cryptMethod === 2 ? 'LUKS' : 'unknown';
    throw badField(f, hfield('crypt_method'), 32, `is ${cryptMethod} (${what} encryption)`, 'E_UNSUPPORTED');
  }

  if (refcountTableClusters === 0) throw badField(f, hfield('refcount_table_clusters'), 56, 'is 0: the image has no refcount table');
  validateTable(
    f, clusterSize,
    { name: 'refcount_table_clusters', at: 56, value: refcountTableClusters },
    { name: 'refcount_table_offset', at: 48, value: refcountTableOffsetRaw },
    clusterSize, MAX_REFTABLE_BYTES,
  );
  validateTable(
    f, clusterSize,
    { name: 'nb_snapshots', at: 60, value: nbSnapshots },
    { name: 'snapshots_offset', at: 64, value: snapshotsOffset },
    SNAPSHOT_HEADER_BYTES, SNAPSHOT_HEADER_BYTES * MAX_SNAPSHOTS,
  );
  validateTable(f, clusterSize, { name: 'l1_size', at: 36, value: l1Size }, { name: 'l1_table_offset', at: 40, value: l1OffsetRaw }, 8, MAX_L1_BYTES);
  const l1Offset = u64(h, 40, f, 40, 'L1 table offset');
  const refcountTableOffset = u64(h, 48, f, 48, 'refcount table offset');

  const l2EntrySize = extendedL2 ? 16 : 8;
  const l2Entries = clusterSize / l2EntrySize;
  // L1 must cover the disk (QEMU's l1_vm_state_index), which must itself fit in an int.
  const needL1 = Math.ceil(virtualSize / (clusterSize * l2Entries));
  if (needL1 > INT_MAX) throw badField(f, hfield('size'), 24, `is ${virtualSize}: it needs ${needL1} L1 entries, QEMU's limit is ${INT_MAX}`);
  if (l1Size < needL1) throw badField(f, hfield('l1_size'), 36, `is ${l1Size}, the disk of ${virtualSize} bytes needs ${needL1}`);
  // Stricter than QEMU (which reads zeroes there): the active L1 table must lie inside the file.
  if (l1Size > 0 && l1Offset + l1Size * 8 > img.size) {
    throw badField(f, hfield('l1_table_offset'), 40, `is ${l1Offset}: the L1 table (${l1Size * 8} bytes) lies past the end of the file; ${TRUNCATED_ADVICE}`);
  }

  // Header extensions: from header_length up to the backing file name, or to the end of the first
  // cluster (QEMU's ext_end): at most one cluster, zeroes past the end of the file.
  const extEnd = backingOffset !== 0n ? Number(backingOffset) : clusterSize;
  // Extensions almost always fit in the first 4 KiB; the rest of the area is read only if needed.
  let area = extEnd > headerLength ? img.readPadded(0, Math.min(4096, extEnd), 'header extensions') : Buffer.alloc(0);
  const need = (end: number) => {
    if (end > area.length) area = img.readPadded(0, extEnd, 'header extensions');
  };
  let backingFormat: string | null = null;
  let bitmaps: BitmapsExtension | null = null;
  let staleBitmaps: { data: Buffer; at: number } | null = null;
  const featureNames: FeatureName[] = [];
  for (let pos = headerLength; pos < extEnd; ) {
    if (pos + 8 > extEnd) throw badField(f, 'header extension', pos, `starts ${extEnd - pos} bytes before the end of the header extension area (${extEnd}), too short for its type and length`);
    need(pos + 8);
    const type = area.readUInt32BE(pos);
    const len = area.readUInt32BE(pos + 4);
    const data = pos + 8;
    if (len > extEnd - data) {
      throw badField(f, `header extension 0x${type.toString(16)} length`, pos + 4, `is ${len}: only ${extEnd - data} bytes remain before the end of the header extension area (${extEnd})`);
    }
    if (type === EXT_END) break;
    need(data + len);
    switch (type) {
      case EXT_BACKING_FORMAT:
        if (len > MAX_BACKING_FORMAT) throw badField(f, 'backing format extension length', pos + 4, `is ${len}, QEMU's limit is ${MAX_BACKING_FORMAT}`);
        backingFormat = cString(area.subarray(data, data + len));
        break;
      case EXT_FEATURE_TABLE:
        for (let e = data; e + 48 <= data + len; e += 48) {
          const t = area[e];
          featureNames.push({ type: t === 0 ? 'incompatible' : t === 1 ? 'compatible' : t === 2 ? 'autoclear' : t, bit: area[e + 1], name: cString(area.subarray(e + 2, e + 48)) });
        }
        break;
      case EXT_BITMAPS:
        if (len !== BITMAPS_EXT_BYTES) throw badField(f, 'bitmaps extension length', pos + 4, `is ${len}, QEMU requires ${BITMAPS_EXT_BYTES}`);
        // Without the autoclear bit QEMU ignores the extension (the bitmaps are stale) and checks
        // nothing more; Strata still shows such bitmaps when they can be read (bitmaps.ts).
        if (autoclear & AUTOCLEAR_BITMAPS) bitmaps = checkBitmapsExtension(f, clusterSize, area.subarray(data, data + len), data);
        else staleBitmaps = { data: Buffer.from(area.subarray(data, data + len)), at: data };
        break;
      case EXT_ENCRYPTION:
        // crypt_method is 0 here (anything else was refused above).
        throw badField(f, 'header extension 0x537be77 (LUKS crypto header)', pos, 'is present but crypt_method is 0; QEMU expects it only with LUKS encryption');
      default:
        break; // unknown extensions are skipped; an external data file name (0x44415441) is ignored without the incompatible bit, as QEMU does
    }
    pos = data + Math.ceil(len / 8) * 8;
  }

  // The backing file name: QEMU keeps the bytes up to the first NUL; an empty name is no backing.
  let backingFile: string | null = null;
  if (backingOffset !== 0n) {
    const at = Number(backingOffset);
    const limit = Math.min(MAX_BACKING_NAME, clusterSize - at);
    if (backingSize > limit) throw badField(f, hfield('backing_file_size'), 16, `is ${backingSize}, QEMU's limit is ${limit}`);
    const name = cString(img.readPadded(at, backingSize, 'backing file name'));
    if (name !== '') backingFile = name;
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
    snapshotsOffset: Number(snapshotsOffset),
    incompatible: incompat,
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
    staleBitmaps,
    featureNames,
  };
}
