// The checks QEMU 7.2 makes when it opens a qcow2 image (block/qcow2.c qcow2_do_open and
// qcow2_read_extensions, block/qcow2-snapshot.c qcow2_read_snapshots, block/qcow2-bitmap.c
// bitmap_list_load and check_dir_entry), each confirmed against the real tools: a QEMU-made image
// is copied and mutated at offsets from qcow2Layout, then
//   refused: `qemu-img info` fails with QEMU's message, and inspect() throws the expected
//            StrataError naming the file, the field and the field's byte offset;
//   accepted: a value at the limit, which both QEMU and Strata open, with the same answers.
import { test, expect, afterAll } from 'vitest';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { inspect } from '../../electron/core/inspect.ts';
import { StrataError, type StrataErrorCode } from '../../electron/core/errors.ts';
import { qemuImg } from '../helpers/qemu.ts';
import { Img, KiB, MiB, HDR, EXT_BITMAPS_TYPE, EXT_BACKING_FORMAT_TYPE, qcow2Layout, killChildren } from '../helpers/image-gen.ts';

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'strata-qemu-open-'));
afterAll(async () => {
  await killChildren();
  fs.rmSync(root, { recursive: true, force: true });
});

// Header fields qcow2Layout/HDR do not name (docs/interop/qcow2.txt).
const F = {
  refcountOrder: 96,
  refcountTableOffset: 48,
  refcountTableClusters: 56,
  nbSnapshots: 60,
  snapshotsOffset: 64,
  incompatibleLow: 76,
  compressionType: 104,
} as const;
const INCOMPAT_COMPRESSION = 1 << 3;
const INCOMPAT_EXTL2 = 1 << 4;
const EXT_CRYPTO_TYPE = 0x0537be77;
const EXT_DATA_FILE_TYPE = 0x44415441;
const EXT_UNKNOWN_TYPE = 0x7374726a;

// Pristine images, made by QEMU once: bm.qcow2 (v3, 64 KiB clusters, relative backing with format,
// bitmaps bmA and bmB, one L2 table) and snap.qcow2 (the same plus two internal snapshots).
const fx = path.join(root, 'fixtures');
const base = Img.qcow2(path.join(fx, 'base.qcow2'), 1 * MiB).io([{ op: 'write', off: 0, len: 64 * KiB, pattern: 1 }]);
const bm = Img.qcow2(path.join(fx, 'bm.qcow2'), 1 * MiB, { backing: base }).addBitmap('bmA', 512).addBitmap('bmB', 64 * KiB);
bm.io([{ op: 'write', off: 0, len: 4 * KiB }]);
const snapPath = path.join(fx, 'snap.qcow2');
fs.copyFileSync(bm.path, snapPath);
qemuImg('snapshot', '-c', 'first', snapPath);
qemuImg('snapshot', '-c', 'second', snapPath);

const PRISTINE = { base: fs.readFileSync(base.path), bm: fs.readFileSync(bm.path), snap: fs.readFileSync(snapPath) };
const L = qcow2Layout(PRISTINE.bm);
const CS = L.clusterSize;
const bx = L.bitmapsExt!;
const [bmA, bmB] = L.bitmaps;
const bitmapsExt = L.extensions.find((e) => e.type === EXT_BITMAPS_TYPE)!;
const bfmtExt = L.extensions.find((e) => e.type === EXT_BACKING_FORMAT_TYPE)!;

/** The snapshot table entries of snap.qcow2: file offset, extra data and name sizes. */
function snapshotEntries(b: Buffer): { at: number; extra: number; size: number }[] {
  let at = Number(b.readBigUInt64BE(F.snapshotsOffset));
  const out = [];
  for (let i = 0; i < b.readUInt32BE(F.nbSnapshots); i++) {
    at = Math.ceil(at / 8) * 8;
    const extra = b.readUInt32BE(at + 36);
    const size = 40 + extra + b.readUInt16BE(at + 12) + b.readUInt16BE(at + 14);
    out.push({ at, extra, size });
    at += size;
  }
  return out;
}
const SN = snapshotEntries(PRISTINE.snap);

// ---------------------------------------------------------------------------------------------
// Mutations

/** Changes the copy in `b` (or returns a replacement); returns null when it wrote `file` itself. */
type Mutation = (b: Buffer, file: string) => Buffer | void | null;
const u32 = (at: number, v: number): Mutation => (b) => void b.writeUInt32BE(v >>> 0, at);
const u64 = (at: number, v: number | bigint): Mutation => (b) => void b.writeBigUInt64BE(BigInt(v), at);
const u8 = (at: number, v: number): Mutation => (b) => void (b[at] = v);
const u16 = (at: number, v: number): Mutation => (b) => void b.writeUInt16BE(v, at);
const all = (...ms: Mutation[]): Mutation => (b, file) => {
  let cur = b;
  for (const m of ms) {
    const res = m(cur, file);
    if (res === null) return null; // wrote the file: must come last
    cur = res ?? cur;
  }
  return cur;
};
const orU32 = (at: number, bits: number): Mutation => (b) => void b.writeUInt32BE((b.readUInt32BE(at) | bits) >>> 0, at);
/** Writes the file and grows it, sparsely, to `size` bytes (last in a chain of mutations). */
const growTo = (size: number): Mutation => (b, file) => {
  fs.writeFileSync(file, b);
  fs.truncateSync(file, size);
  return null;
};

/** The extension area rewritten from header_length: [type, data] in order, an end marker unless told. */
function extensions(list: [number, Buffer][], o: { end?: boolean } = {}): Mutation {
  return (b) => {
    const area = Number(b.readBigUInt64BE(HDR.backingOffset)) || CS;
    b.fill(0, L.headerLength, area);
    let p = L.headerLength;
    for (const [type, data] of list) {
      b.writeUInt32BE(type, p);
      b.writeUInt32BE(data.length, p + 4);
      data.copy(b, p + 8);
      p += 8 + Math.ceil(data.length / 8) * 8;
    }
    if (o.end !== false) b.writeBigUInt64BE(0n, p);
  };
}
const bitmapsExtData = () => Buffer.from(PRISTINE.bm.subarray(bx.at, bx.at + 24));
const bfmt = (s: string) => Buffer.from(s, 'latin1');

/** Moves the backing file name to `at` (its length unchanged). */
const moveBackingName = (at: number): Mutation => (b) => {
  const name = Buffer.from(PRISTINE.bm.subarray(L.backingOffset, L.backingOffset + L.backingSize));
  b.fill(0, L.backingOffset, L.backingOffset + L.backingSize);
  name.copy(b, at);
  b.writeBigUInt64BE(BigInt(at), HDR.backingOffset);
};

/**
 * A snapshot table of `n` entries at the end of the file, each with extra data and names of the
 * given sizes (the last one's names may differ), written sparsely: only the 40-byte headers exist.
 */
function snapshotTable(n: number, each: { extra: number; id: number; name: number }, lastName = each.name): Mutation {
  return (b, file) => {
    fs.writeFileSync(file, b);
    const start = Math.ceil(b.length / CS) * CS;
    const fd = fs.openSync(file, 'r+');
    try {
      let p = start;
      for (let i = 0; i < n; i++) {
        p = Math.ceil(p / 8) * 8;
        const name = i === n - 1 ? lastName : each.name;
        const h = Buffer.alloc(40);
        h.writeUInt16BE(each.id, 12);
        h.writeUInt16BE(name, 14);
        h.writeUInt32BE(each.extra, 36);
        fs.writeSync(fd, h, 0, 40, p);
        p += 40 + each.extra + each.id + name;
      }
      fs.ftruncateSync(fd, p + 8);
      const ptr = Buffer.alloc(12);
      ptr.writeUInt32BE(n, 0);
      ptr.writeBigUInt64BE(BigInt(start), 4);
      fs.writeSync(fd, ptr, 0, 12, F.nbSnapshots);
    } finally {
      fs.closeSync(fd);
    }
    return null;
  };
}

// ---------------------------------------------------------------------------------------------
// Scenarios and the two tools

let seq = 0;
/** A fresh folder with base.qcow2 and the chosen top image mutated in place; returns the top's path. */
function scenario(image: 'bm' | 'snap', mutation: Mutation): string {
  const dir = path.join(root, `s${seq++}`);
  fs.mkdirSync(dir);
  fs.writeFileSync(path.join(dir, 'base.qcow2'), PRISTINE.base);
  const top = path.join(dir, `${image}.qcow2`);
  const b = Buffer.from(PRISTINE[image]);
  const res = mutation(b, top);
  if (res === null) return top; // the mutation wrote the file itself
  fs.writeFileSync(top, res ?? b);
  return top;
}

/** `qemu-img info` of one image (its backing is not opened unless `chain`). */
function qemuInfo(file: string, chain = false): { ok: boolean; message: string; json: any } {
  const args = ['info', '-U', '--output=json', ...(chain ? ['--backing-chain'] : []), file];
  const r = spawnSync('qemu-img', args, { encoding: 'utf8', maxBuffer: 256 * MiB });
  if (r.error) throw r.error;
  return { ok: r.status === 0, message: (r.stderr ?? '').trim(), json: r.status === 0 ? JSON.parse(r.stdout) : null };
}

interface Refusal {
  image?: 'bm' | 'snap';
  mutation: Mutation;
  /** QEMU's own message */
  qemu: RegExp;
  code?: StrataErrorCode;
  /** the field as Strata names it, and its byte offset */
  field: string;
  offset: number;
}

let refusedCases = 0;
let acceptedCases = 0;

/** QEMU refuses the image; so does Strata, naming file, field and offset, and allocating nothing big. */
function refused(name: string, c: Refusal): void {
  refusedCases++;
  test(`refused: ${name}`, () => {
    const file = scenario(c.image ?? 'bm', c.mutation);
    const q = qemuInfo(file);
    assert.equal(q.ok, false, `qemu-img info opened ${name}`);
    assert.match(q.message, c.qemu);
    const rss0 = process.memoryUsage().rss;
    let caught: unknown;
    try {
      inspect(file);
    } catch (e) {
      caught = e;
    }
    assert.ok(caught instanceof StrataError, `expected a StrataError, got ${caught instanceof Error ? caught.stack : String(caught)}`);
    expect(caught.code, caught.message).toBe(c.code ?? 'E_CORRUPT');
    assert.equal(caught.file, file);
    assert.ok(caught.message.startsWith(`${file}: `), `message names the file: ${caught.message}`);
    assert.ok(caught.message.includes(`${c.field} (offset ${c.offset})`), `message names "${c.field} (offset ${c.offset})": ${caught.message}`);
    assert.equal(caught.offset, c.offset, `.offset of ${caught.message}`);
    assert.equal(caught.message.split('\n').length, 1, 'one line');
    assert.ok(process.memoryUsage().rss - rss0 < 96 * MiB, 'nothing allocated from the claimed sizes');
  });
}

/** QEMU opens the image; so does Strata, and both see the same chain, backing strings and bitmaps. */
function accepted(name: string, image: 'bm' | 'snap', mutation: Mutation, extra?: (r: ReturnType<typeof inspect>, q: any[]) => void): void {
  acceptedCases++;
  test(`accepted: ${name}`, () => {
    const file = scenario(image, mutation);
    const q = qemuInfo(file, true);
    assert.ok(q.ok, `qemu-img info refused ${name}: ${q.message}`);
    const r = inspect(file);
    const chain = q.json as any[];
    assert.equal(r.layers.length, chain.length, 'layers');
    r.layers.forEach((l, i) => {
      const ql = chain[i];
      assert.equal(l.virtualSize, ql['virtual-size'], `virtual size of layer ${i}`);
      assert.equal(l.backingFile, ql['backing-filename'] ?? null, `backing file of layer ${i}`);
      if (ql['backing-filename-format'] !== undefined) assert.equal(l.backingFormat, ql['backing-filename-format'], `backing format of layer ${i}`);
      const qb = (ql['format-specific']?.data?.bitmaps ?? []) as { name: string; granularity: number }[];
      assert.deepEqual(l.bitmaps.map((b) => [b.name, b.granularity]), qb.map((b) => [b.name, b.granularity]), `bitmaps of layer ${i}`);
    });
    extra?.(r, chain);
  });
}

test('fixtures: QEMU made what the cases assume', () => {
  expect(qemuInfo(bm.path).ok).toBe(true);
  expect(qemuInfo(snapPath).ok).toBe(true);
  assert.deepEqual(L.bitmaps.map((b) => b.name), ['bmA', 'bmB']);
  assert.equal(CS, 64 * KiB);
  assert.equal(L.backingSize, 'base.qcow2'.length);
  assert.equal(SN.length, 2);
  assert.deepEqual([bfmtExt.at < bitmapsExt.at, bitmapsExt.at + 32 <= L.backingOffset], [true, true]);
  assert.equal(PRISTINE.bm.readUInt32BE(F.refcountTableClusters), 1);
});

// --- qcow2_do_open: the header ---------------------------------------------------------------------
refused('version 4', { mutation: u32(HDR.version, 4), qemu: /Unsupported qcow2 version 4/, code: 'E_UNSUPPORTED', field: 'header field version', offset: 4 });
refused('cluster_bits 22', { mutation: u32(HDR.clusterBits, 22), qemu: /Unsupported cluster size: 2\^22/, field: 'header field cluster_bits', offset: 20 });
refused('header_length 103 (v3 needs 104)', { mutation: u32(HDR.headerLength, 103), qemu: /qcow2 header too short/, field: 'header field header_length', offset: 100 });
refused('header_length one past the cluster size', { mutation: u32(HDR.headerLength, CS + 1), qemu: /qcow2 header exceeds cluster size/, field: 'header field header_length', offset: 100 });
accepted('header_length equal to the cluster size (no room left for extensions)', 'bm', u32(HDR.headerLength, CS), (r) => {
  assert.equal(r.layers[0].backingFormat, null, 'no extension is read, so no backing format');
});

// The example: QEMU checks the backing file offset whatever the length says.
refused('backing_file_offset past the first cluster, backing_file_size 0', {
  mutation: all(u64(HDR.backingOffset, CS + 8), u32(HDR.backingSize, 0)),
  qemu: /Invalid backing file offset/,
  field: 'header field backing_file_offset',
  offset: 8,
});
refused('backing_file_offset past the first cluster', { mutation: u64(HDR.backingOffset, CS + 8), qemu: /Invalid backing file offset/, field: 'header field backing_file_offset', offset: 8 });
accepted('backing_file_offset equal to the cluster size, backing_file_size 0 (no backing)', 'bm', all(u64(HDR.backingOffset, CS), u32(HDR.backingSize, 0)), (r) => {
  assert.equal(r.layers[0].backingFile, null);
});
refused('backing_file_size 1024', { mutation: u32(HDR.backingSize, 1024), qemu: /Backing file name too long/, field: 'header field backing_file_size', offset: 16 });
accepted('backing_file_size 1023 (the name, then NULs)', 'bm', u32(HDR.backingSize, 1023), (r) => {
  assert.equal(r.layers[0].backingFile, 'base.qcow2');
});
refused('backing name one byte past the first cluster', {
  mutation: all(moveBackingName(CS - L.backingSize), u32(HDR.backingSize, L.backingSize + 1)),
  qemu: /Backing file name too long/,
  field: 'header field backing_file_size',
  offset: 16,
});
accepted('backing name ending exactly at the end of the first cluster', 'bm', moveBackingName(CS - L.backingSize), (r) => {
  assert.equal(r.layers[0].backingFile, 'base.qcow2');
  assert.equal(r.layers[0].backingFormat, 'qcow2');
});

refused('compression type bit set, compression_type zlib', {
  mutation: orU32(F.incompatibleLow, INCOMPAT_COMPRESSION),
  qemu: /Compression type incompatible feature bit must not be set/,
  field: 'header field incompatible_features',
  offset: 72,
});
refused('compression_type zstd without the incompatible bit', {
  mutation: u8(F.compressionType, 1),
  qemu: /Compression type incompatible feature bit must be set/,
  field: 'header field incompatible_features',
  offset: 72,
});
refused('compression_type 2', { mutation: all(orU32(F.incompatibleLow, INCOMPAT_COMPRESSION), u8(F.compressionType, 2)), qemu: /unknown compression type: 2/, code: 'E_UNSUPPORTED', field: 'header field compression_type', offset: 104 });
accepted('compression_type zstd with its incompatible bit', 'bm', all(orU32(F.incompatibleLow, INCOMPAT_COMPRESSION), u8(F.compressionType, 1)), (r, q) => {
  assert.equal(r.layers[0].compressionType, 'zstd');
  assert.equal(q[0]['format-specific'].data['compression-type'], 'zstd');
});
refused('unknown incompatible feature bit 32', { mutation: u32(HDR.incompatible, 1), qemu: /Unsupported qcow2 feature\(s\): Unknown incompatible feature: 100000000/, code: 'E_UNSUPPORTED', field: 'header field incompatible_features', offset: 72 });
refused('extended L2 with 8 KiB clusters (256-byte subclusters)', {
  mutation: all(orU32(F.incompatibleLow, INCOMPAT_EXTL2), u32(HDR.clusterBits, 13)),
  qemu: /Unsupported subcluster size: 256/,
  field: 'header field cluster_bits',
  offset: 20,
});
refused('refcount_order 7', { mutation: u32(F.refcountOrder, 7), qemu: /Reference count entry width too large/, field: 'header field refcount_order', offset: 96 });
accepted('refcount_order 6', 'bm', u32(F.refcountOrder, 6));
refused('crypt_method 3', { mutation: u32(HDR.cryptMethod, 3), qemu: /Unsupported encryption method 3/, code: 'E_UNSUPPORTED', field: 'header field crypt_method', offset: 32 });

// --- qcow2_do_open: qcow2_validate_table for the refcount table, the snapshot table and L1 -------
refused('refcount_table_clusters 0', { mutation: u32(F.refcountTableClusters, 0), qemu: /does not contain a reference count table/, field: 'header field refcount_table_clusters', offset: 56 });
refused('refcount table of 8 MiB + one cluster', {
  mutation: u32(F.refcountTableClusters, (8 * MiB) / CS + 1),
  qemu: /Reference count table too large/,
  field: 'header field refcount_table_clusters',
  offset: 56,
});
accepted('refcount table of exactly 8 MiB', 'bm', u32(F.refcountTableClusters, (8 * MiB) / CS));
refused('refcount_table_offset not cluster aligned', { mutation: u64(F.refcountTableOffset, CS + 512), qemu: /Reference count table offset invalid/, field: 'header field refcount_table_offset', offset: 48 });

refused('nb_snapshots 65537', { mutation: u32(F.nbSnapshots, 65537), qemu: /Snapshot table too large/, field: 'header field nb_snapshots', offset: 60 });
accepted('nb_snapshots 65536 with the table past the end of the file (reads as empty entries)', 'bm', all(u32(F.nbSnapshots, 65536), u64(F.snapshotsOffset, 1000 * CS)));
refused('snapshots_offset not cluster aligned, nb_snapshots 0', { mutation: u64(F.snapshotsOffset, CS + 8), qemu: /Snapshot table offset invalid/, field: 'header field snapshots_offset', offset: 64 });
refused('snapshots_offset not cluster aligned', { image: 'snap', mutation: u64(F.snapshotsOffset, Number(PRISTINE.snap.readBigUInt64BE(F.snapshotsOffset)) + 8), qemu: /Snapshot table offset invalid/, field: 'header field snapshots_offset', offset: 64 });

refused('l1_size past 32 MiB of entries', { mutation: u32(HDR.l1Size, (32 * MiB) / 8 + 1), qemu: /Active L1 table too large/, field: 'header field l1_size', offset: 36 });
// The L1 table moved to the end of the file first, so that it covers no other metadata.
const l1AtEnd = Math.ceil(L.fileSize / CS) * CS;
const moveL1ToEnd: Mutation = (b) => {
  const l1 = Buffer.from(b.subarray(L.l1Offset, L.l1Offset + L.l1Size * 8));
  const out = Buffer.concat([b, Buffer.alloc(l1AtEnd - b.length), l1]);
  out.writeBigUInt64BE(BigInt(l1AtEnd), HDR.l1Offset);
  return out;
};
accepted('l1_size of exactly 32 MiB of entries (file grown, sparsely, to hold them)', 'bm', all(moveL1ToEnd, u32(HDR.l1Size, (32 * MiB) / 8), growTo(l1AtEnd + 32 * MiB)));
refused('l1_table_offset not cluster aligned with l1_size 0', {
  mutation: all(u64(HDR.size, 0), u32(HDR.l1Size, 0), u64(HDR.l1Offset, L.l1Offset + 8)),
  qemu: /Active L1 table offset invalid/,
  field: 'header field l1_table_offset',
  offset: 40,
});
refused('a disk too big for an int of L1 entries (512-byte clusters, 128 TiB)', {
  mutation: all(u64(HDR.backingOffset, 0), u32(HDR.backingSize, 0), u32(HDR.clusterBits, 9), u64(HDR.size, 2n ** 47n)),
  qemu: /Image is too big/,
  field: 'header field size',
  offset: 24,
});
refused('l1_size one entry short of the disk', { mutation: all(u64(HDR.size, 2n ** 40n), u32(HDR.l1Size, 2 ** 40 / (CS * (CS / 8)) - 1)), qemu: /L1 table is too small/, field: 'header field l1_size', offset: 36 });

// --- qcow2_read_extensions --------------------------------------------------------------------------
refused('extension length past the end of the extension area', {
  mutation: u32(bitmapsExt.at + 4, L.backingOffset - bitmapsExt.at - 8 + 1),
  qemu: /Header extension too large/,
  field: 'header extension 0x23852875 length',
  offset: bitmapsExt.at + 4,
});
refused('extension header straddling the end of the extension area (backing name moved to 4 bytes after it)', {
  mutation: moveBackingName(L.extensions.reduce((end, e) => Math.max(end, e.at + 8 + Math.ceil(e.length / 8) * 8), 0) + 4),
  qemu: /Header extension too large/,
  field: 'header extension',
  offset: L.extensions.reduce((end, e) => Math.max(end, e.at + 8 + Math.ceil(e.length / 8) * 8), 0),
});
accepted('extensions filling the area exactly, with no end marker', 'bm', (b) => {
  const used = 8 + 8 + 8 + 24; // backing format ("qcow2" padded) and bitmaps
  extensions([[EXT_BACKING_FORMAT_TYPE, bfmt('qcow2')], [EXT_BITMAPS_TYPE, bitmapsExtData()], [EXT_UNKNOWN_TYPE, Buffer.alloc(L.backingOffset - L.headerLength - used - 8, 0x5a)]], { end: false })(b, '');
});
refused('backing format extension of 16 bytes', {
  mutation: extensions([[EXT_BACKING_FORMAT_TYPE, bfmt('qcow2\0xxxxxxxxxx')], [EXT_BITMAPS_TYPE, bitmapsExtData()]]),
  qemu: /ext_backing_format: len=16 too large \(>=16\)/,
  field: 'backing format extension length',
  offset: L.headerLength + 4,
});
accepted('backing format extension of 15 bytes (name, then NULs)', 'bm', extensions([[EXT_BACKING_FORMAT_TYPE, bfmt('qcow2\0\0\0\0\0\0\0\0\0\0')], [EXT_BITMAPS_TYPE, bitmapsExtData()]]), (r) => {
  assert.equal(r.layers[0].backingFormat, 'qcow2');
});
refused('LUKS crypto header extension in an unencrypted image', {
  mutation: extensions([[EXT_BACKING_FORMAT_TYPE, bfmt('qcow2')], [EXT_BITMAPS_TYPE, bitmapsExtData()], [EXT_CRYPTO_TYPE, Buffer.alloc(16)]]),
  qemu: /CRYPTO header extension only expected with LUKS encryption method/,
  field: 'header extension 0x537be77 (LUKS crypto header)',
  offset: L.headerLength + 16 + 32,
});
accepted('external data file extension without the incompatible bit (ignored)', 'bm', extensions([[EXT_BACKING_FORMAT_TYPE, bfmt('qcow2')], [EXT_BITMAPS_TYPE, bitmapsExtData()], [EXT_DATA_FILE_TYPE, bfmt('data.raw')]]));
accepted('an unknown extension (skipped)', 'bm', extensions([[EXT_BACKING_FORMAT_TYPE, bfmt('qcow2')], [EXT_UNKNOWN_TYPE, bfmt('anything')], [EXT_BITMAPS_TYPE, bitmapsExtData()]]));

// The bitmaps extension (checked only when the autoclear bit says the bitmaps are valid).
refused('bitmaps extension of 32 bytes', { mutation: u32(bitmapsExt.at + 4, 32), qemu: /bitmaps_ext: Invalid extension length/, field: 'bitmaps extension length', offset: bitmapsExt.at + 4 });
refused('bitmaps extension reserved field set', { mutation: u32(bx.at + 4, 1), qemu: /bitmaps_ext: Reserved field is not zero/, field: 'bitmaps extension reserved field', offset: bx.at + 4 });
refused('nb_bitmaps 65536', { mutation: u32(bx.at, 65536), qemu: /Image has 65536 bitmaps, exceeding the QEMU supported maximum of 65535/, field: 'bitmaps extension field nb_bitmaps', offset: bx.at });
refused('nb_bitmaps 0', { mutation: u32(bx.at, 0), qemu: /found bitmaps extension with zero bitmaps/, field: 'bitmaps extension field nb_bitmaps', offset: bx.at });
refused('bitmap_directory_offset not cluster aligned', { mutation: u64(bx.at + 16, bx.dirOffset + 8), qemu: /bitmaps_ext: invalid bitmap directory offset/, field: 'bitmaps extension field bitmap_directory_offset', offset: bx.at + 16 });
refused('bitmap_directory_size one byte past 1024 * 65535', {
  mutation: u64(bx.at + 8, 1024 * 65535 + 1),
  qemu: /bitmap directory size \(67107841\) exceeds the maximum supported size \(67107840\)/,
  field: 'bitmaps extension field bitmap_directory_size',
  offset: bx.at + 8,
});
refused('bitmap_directory_size 0', { mutation: u64(bx.at + 8, 0), qemu: /Requested bitmap directory size is zero/, field: 'bitmaps extension field bitmap_directory_size', offset: bx.at + 8 });
accepted('a broken bitmap directory whose autoclear bit is clear (QEMU ignores it as stale)', 'bm', all(u64(HDR.autoclear, 0), u8(bmA.at + 17, 8), u32(bx.at + 4, 7)), (r) => {
  assert.equal(r.layers[0].bitmaps.length, 0);
});

// --- bitmap_list_load and check_dir_entry -------------------------------------------------------------
const entryRefused = (name: string, mutation: Mutation, field: string, offset: number, qemu = /Bitmap 'bmA' doesn't satisfy the constraints/) =>
  refused(`bitmap directory entry: ${name}`, { mutation, qemu, field: `bitmap directory entry 0 field ${field}`, offset });
entryRefused('extra_data_size 8', u32(bmA.at + 20, 8), 'extra_data_size', bmA.at + 20, /Bitmap extra data is not supported/);
entryRefused('type 2', u8(bmA.at + 16, 2), 'type', bmA.at + 16);
entryRefused('flag bit 2 (reserved in QEMU 7.2)', orU32(bmA.at + 12, 1 << 2), 'flags', bmA.at + 12);
entryRefused('flag bit 31', orU32(bmA.at + 12, 1 << 31), 'flags', bmA.at + 12);
entryRefused('bitmap_table_size 0', u32(bmA.at + 8, 0), 'bitmap_table_size', bmA.at + 8);
entryRefused('bitmap_table_size 0x8000001', u32(bmA.at + 8, 0x8000001), 'bitmap_table_size', bmA.at + 8);
entryRefused('bitmap_table_size over 512 MiB of bitmap data', u32(bmA.at + 8, 0x20000000 / CS + 1), 'bitmap_table_size', bmA.at + 8);
entryRefused('bitmap_table_offset 0', u64(bmA.at, 0), 'bitmap_table_offset', bmA.at);
entryRefused('bitmap_table_offset not cluster aligned', u64(bmA.at, bmA.tableOffset + 512), 'bitmap_table_offset', bmA.at);
entryRefused('granularity_bits 8', u8(bmA.at + 17, 8), 'granularity_bits', bmA.at + 17);
entryRefused('granularity_bits 32', u8(bmA.at + 17, 32), 'granularity_bits', bmA.at + 17);
accepted('granularity_bits 31 (one table cluster still covers the disk)', 'bm', u8(bmA.at + 17, 31), (r) => {
  assert.equal(r.layers[0].bitmaps[0].granularity, 2 ** 31);
});
refused('bitmap directory entry: name_size 1024 (last entry, directory grown to hold it)', {
  mutation: all(u16(bmB.at + 18, 1024), u64(bx.at + 8, bmB.at - bx.dirOffset + Math.ceil((24 + 1024) / 8) * 8)),
  qemu: /Bitmap '.*' doesn't satisfy the constraints/,
  field: 'bitmap directory entry 1 field name_size',
  offset: bmB.at + 18,
});
refused('more directory entries than nb_bitmaps', { mutation: u32(bx.at, 1), qemu: /More bitmaps found than specified in header extension/, field: 'bitmaps extension field nb_bitmaps', offset: bx.at });
accepted('nb_bitmaps 1 with the directory cut to the first entry', 'bm', all(u32(bx.at, 1), u64(bx.at + 8, bmB.at - bx.dirOffset)), (r) => {
  assert.deepEqual(r.layers[0].bitmaps.map((b) => b.name), ['bmA']);
});
refused('fewer directory entries than nb_bitmaps', { mutation: u32(bx.at, 3), qemu: /Less bitmaps found than specified in header extension/, field: 'bitmaps extension field nb_bitmaps', offset: bx.at });
refused('bitmap_directory_size 8 bytes past the last entry', { mutation: u64(bx.at + 8, bx.dirSize + 8), qemu: /Broken bitmap directory/, field: 'bitmaps extension field bitmap_directory_size', offset: bx.at + 8 });
refused('bitmap table one entry longer than the disk needs (bitmap not in use)', {
  mutation: u32(bmA.at + 8, bmA.tableSize + 1),
  qemu: /Could not read bitmap 'bmA' from image/,
  field: 'bitmap directory entry 0 field bitmap_table_size',
  offset: bmA.at + 8,
});

// --- qcow2_read_snapshots -----------------------------------------------------------------------------
const snapshotExtraRefused = (i: number, extra: number) =>
  refused(`snapshot entry ${i} with ${extra} bytes of extra data`, {
    image: 'snap',
    mutation: u32(SN[i].at + 36, extra),
    qemu: new RegExp(`Too much extra metadata in snapshot table entry ${i}`),
    field: `snapshot table entry ${i} field extra_data_size`,
    offset: SN[i].at + 36,
  });
snapshotExtraRefused(1, 1025);
snapshotExtraRefused(0, 0xffffffff);
accepted('snapshot entry 1 with 1024 bytes of extra data', 'snap', u32(SN[1].at + 36, 1024));
// 507 entries of 132136 bytes (40 + 1024 extra + 2 * 65535 of names, padded), and a last one sized
// so that the table is exactly 64 MiB, QEMU's limit; one byte more and it is refused.
const BIG = { extra: 1024, id: 65535, name: 65535 };
const lastNameForExactly64MiB = 64 * MiB - 507 * 132136 - 40 - 1024 - 65535;
accepted('snapshot table of exactly 64 MiB (508 entries, sparse)', 'bm', snapshotTable(508, BIG, lastNameForExactly64MiB));
refused('snapshot table one byte past 64 MiB', {
  mutation: snapshotTable(508, BIG, lastNameForExactly64MiB + 1),
  qemu: /Snapshot table is too big/,
  field: 'header field nb_snapshots',
  offset: 60,
});

// --- the CLI: exit 2 and one line naming the file, for inspect, map and bitmap show -------------------
test('CLI: the issue example exits 2 with one line naming file, field and offset', () => {
  const file = scenario('bm', all(u64(HDR.backingOffset, CS + 8), u32(HDR.backingSize, 0)));
  const cliMain = path.resolve(import.meta.dirname, '../../electron/core/cli/main.ts');
  const cwd = path.resolve(import.meta.dirname, '../..');
  for (const args of [['inspect', file], ['map', file, '--json'], ['bitmap', 'show', file, 'bmA']]) {
    const script = `import(${JSON.stringify(cliMain)}).then((m) => m.main(${JSON.stringify(args)})).then((c) => { process.exitCode = c; });`;
    const r = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { cwd, encoding: 'utf8' });
    assert.equal(r.status, 2, `${args.join(' ')}: ${r.stderr}`);
    const lines = r.stderr.trim().split('\n');
    assert.equal(lines.length, 1, r.stderr);
    assert.ok(lines[0].includes(file) && lines[0].includes('header field backing_file_offset (offset 8)'), lines[0]);
  }
});

test('the case count', () => {
  assert.ok(refusedCases >= 50 && acceptedCases >= 15, `${refusedCases} refused, ${acceptedCases} accepted`);
});
