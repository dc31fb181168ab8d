// Damaged and unsupported images: real QEMU-made images, copied, then mutated byte-wise with fs at
// offsets taken from the qcow2 spec (test/helpers/image-gen.ts qcow2Layout). Each must fail with
// the right StrataError code, and the message must name the file at fault. Then a seeded fuzz loop.
import { test, afterAll } from 'vitest';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { inspect, inspectPartial } from '../../electron/core/inspect.ts';
import { StrataError, TRUNCATED_ADVICE, type StrataErrorCode } from '../../electron/core/errors.ts';
import { qemuImg, qemuInfoChain, run } from '../helpers/qemu.ts';
import { Img, KiB, MiB, HDR, EXT_BITMAPS_TYPE, EXT_BACKING_FORMAT_TYPE, qcow2Layout, killChildren, type Qcow2Layout } from '../helpers/image-gen.ts';

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'strata-corrupt-'));
afterAll(async () => {
  await killChildren();
  fs.rmSync(root, { recursive: true, force: true });
});

// Pristine images, made by QEMU once.
const fx = path.join(root, 'fixtures');
const base = Img.qcow2(path.join(fx, 'base.qcow2'), 1 * MiB).io([{ op: 'write', off: 0, len: 1 * MiB, pattern: 1 }]);
// bm.qcow2: v3, 64 KiB clusters, relative backing with format, two bitmaps with names of equal length.
const bm = Img.qcow2(path.join(fx, 'bm.qcow2'), 1 * MiB, { backing: base }).addBitmap('bmA', 512).addBitmap('bmB', 64 * KiB);
bm.io([
  { op: 'write', off: 0, len: 4 * KiB },
  { op: 'write', off: 512 * KiB, len: 64 * KiB },
]);
// More shapes for the fuzz loop: 512-byte clusters, and extended L2 with a compressed cluster.
const small = Img.qcow2(path.join(fx, 'c512.qcow2'), 256 * KiB, { cluster: 512 }).addBitmap('s1', 512).addBitmap('s2', 4 * KiB, { disabled: true });
small.io([
  { op: 'write', off: 0, len: 8 * KiB },
  { op: 'write', off: 100 * KiB, len: 3 * KiB },
]);
const ext = Img.qcow2(path.join(fx, 'extl2.qcow2'), 1 * MiB, { cluster: 16 * KiB, extendedL2: true }).addBitmap('e', 1 * KiB);
ext.io([
  { op: 'compress', off: 0, len: 16 * KiB },
  { op: 'write', off: 33 * KiB, len: 2 * KiB },
  { op: 'zero', off: 64 * KiB, len: 1 * KiB },
]);

const PRISTINE = { base: fs.readFileSync(base.path), bm: fs.readFileSync(bm.path) };
const L: Qcow2Layout = qcow2Layout(PRISTINE.bm);
const CS = L.clusterSize;
const pastEof = (Math.ceil(L.fileSize / CS) + 16) * CS; // cluster aligned, well past the end

let seq = 0;
/** A fresh folder holding copies of base.qcow2 and bm.qcow2 (bm's relative backing resolves there). */
function scenario(): { dir: string; top: string; base: string } {
  const dir = path.join(root, `s${seq++}`);
  fs.mkdirSync(dir);
  const top = path.join(dir, 'bm.qcow2');
  const b = path.join(dir, 'base.qcow2');
  fs.writeFileSync(top, PRISTINE.bm);
  fs.writeFileSync(b, PRISTINE.base);
  return { dir, top, base: b };
}

/** Mutates the file in place: fn gets the whole content and may return a replacement (truncation). */
function edit(file: string, fn: (b: Buffer) => Buffer | void): void {
  const b = fs.readFileSync(file);
  const res = fn(b) ?? b;
  fs.writeFileSync(file, res);
}

const setU32 = (at: number, v: number) => (b: Buffer) => void b.writeUInt32BE(v >>> 0, at);
const setU64 = (at: number, v: bigint) => (b: Buffer) => void b.writeBigUInt64BE(v, at);

/** The operation must throw a StrataError with `code` whose message names `file` (and whose .file is it). */
function expectError(file: string, code: StrataErrorCode, fn: () => unknown = () => inspect(file)): StrataError {
  let caught: unknown;
  try {
    fn();
  } catch (e) {
    caught = e;
  }
  assert.ok(caught !== undefined, `expected ${code} for ${file}, but it succeeded`);
  assert.ok(caught instanceof StrataError, `expected a StrataError, got ${caught instanceof Error ? caught.stack : String(caught)}`);
  assert.equal(caught.code, code, `code (message: ${caught.message})`);
  assert.ok(caught.message.includes(file), `message names ${file}: ${caught.message}`);
  assert.equal(caught.file, file, `.file of ${caught.message}`);
  return caught;
}

/** Copy bm.qcow2, apply `mutation`, expect `code` naming bm.qcow2. */
function corruptCase(name: string, code: StrataErrorCode, mutation: (b: Buffer) => Buffer | void): void {
  test(name, () => {
    const s = scenario();
    edit(s.top, mutation);
    expectError(s.top, code);
  });
}

// ---------------------------------------------------------------------------------------------

test('fixtures: the pristine images are valid for QEMU and for the reader', () => {
  for (const img of [bm, small, ext]) {
    run('qemu-img', ['check', '-q', img.path]);
    const r = inspect(img.path);
    assert.equal(r.layers.length, qemuInfoChain(img.path).length);
    assert.ok(r.layers[0].bitmaps.length >= 1, `${img.path} has bitmaps`);
  }
  assert.deepEqual(L.bitmaps.map((b) => b.name), ['bmA', 'bmB']);
  assert.ok(L.l2Offsets.length === 1 && L.backingOffset > 0 && L.bitmapsExt);
});

// --- magic and version ---------------------------------------------------------------------------
test('bad magic on the top image: probed as raw, the way QEMU probes it (no error)', () => {
  const s = scenario();
  edit(s.top, setU32(HDR.magic, 0x12345678));
  const q = qemuInfoChain(s.top);
  const r = inspect(s.top);
  assert.equal(q[0].format, 'raw');
  assert.deepEqual(
    r.layers.map((l) => [l.format, l.backingFile, l.bitmaps.length]),
    q.map((x: any) => [x.format, null, 0]),
  );
});

test('raw image whose size is not a multiple of 512: virtual size as QEMU reports it (rounded up to 512)', () => {
  // QEMU's raw driver counts whole 512-byte sectors (bdrv_getlength rounds the file size up); the
  // tail reads as zeroes. A qcow2 image whose magic was destroyed is such a file: 917568 bytes here.
  const s = scenario();
  const p = path.join(s.dir, 'odd.raw');
  qemuImg('create', '-q', '-f', 'raw', p, '4096');
  fs.truncateSync(p, 4096 - 100);
  const q = qemuInfoChain(p);
  assert.equal(q[0]['virtual-size'], 4096, 'QEMU rounds the raw size up to a sector');
  const r = inspect(p);
  assert.equal(r.layers[0].virtualSize, q[0]['virtual-size'], 'raw virtual size vs qemu-img info');
});

test('bad magic in a backing declared qcow2 -> E_NOT_QCOW2 naming the backing file', () => {
  const s = scenario();
  edit(s.base, setU32(HDR.magic, 0x12345678));
  expectError(s.base, 'E_NOT_QCOW2', () => inspect(s.top));
});

corruptCase('version 1 -> E_UNSUPPORTED', 'E_UNSUPPORTED', setU32(HDR.version, 1));
corruptCase('version 4 -> E_UNSUPPORTED', 'E_UNSUPPORTED', setU32(HDR.version, 4));

// --- header geometry -----------------------------------------------------------------------------
corruptCase('cluster_bits 8 -> E_CORRUPT', 'E_CORRUPT', setU32(HDR.clusterBits, 8));
corruptCase('cluster_bits 22 -> E_CORRUPT', 'E_CORRUPT', setU32(HDR.clusterBits, 22));
corruptCase('virtual size 2^62 -> E_CORRUPT', 'E_CORRUPT', setU64(HDR.size, 2n ** 62n));
corruptCase('virtual size 2^52 (L1 far too small for it) -> E_CORRUPT', 'E_CORRUPT', setU64(HDR.size, 2n ** 52n));
test('l1_size of 64 MiB of entries -> E_CORRUPT, without allocating it', () => {
  const s = scenario();
  edit(s.top, setU32(HDR.l1Size, 8 * 1024 * 1024));
  const before = process.memoryUsage().rss;
  expectError(s.top, 'E_CORRUPT');
  assert.ok(process.memoryUsage().rss - before < 48 * MiB, 'no allocation of the claimed L1');
});
corruptCase('L1 table offset past EOF -> E_CORRUPT', 'E_CORRUPT', setU64(HDR.l1Offset, BigInt(pastEof)));
corruptCase('L1 table offset unaligned -> E_CORRUPT', 'E_CORRUPT', setU64(HDR.l1Offset, BigInt(L.l1Offset + 8)));
corruptCase('unknown incompatible feature bit -> E_UNSUPPORTED', 'E_UNSUPPORTED', setU64(HDR.incompatible, 1n << 5n));

// --- L1 / L2 entries -----------------------------------------------------------------------------
const COPIED = 1n << 63n;
corruptCase('L1 entry pointing past EOF -> E_CORRUPT', 'E_CORRUPT', setU64(L.l1Offset, COPIED | BigInt(pastEof)));
corruptCase('L1 entry pointing into the header cluster -> E_CORRUPT', 'E_CORRUPT', setU64(L.l1Offset, COPIED | 512n));
corruptCase('L1 entry pointing at the L1 table itself -> E_CORRUPT', 'E_CORRUPT', setU64(L.l1Offset, COPIED | BigInt(L.l1Offset)));
corruptCase('L1 entry unaligned -> E_CORRUPT', 'E_CORRUPT', setU64(L.l1Offset, COPIED | BigInt(L.l2Offsets[0] + 4096)));
corruptCase('L2 entry pointing past EOF -> E_CORRUPT', 'E_CORRUPT', setU64(L.l2Offsets[0], COPIED | BigInt(pastEof)));
corruptCase('L2 entry unaligned -> E_CORRUPT', 'E_CORRUPT', (b) => {
  const cur = b.readBigUInt64BE(L.l2Offsets[0]);
  b.writeBigUInt64BE(cur + 4096n, L.l2Offsets[0]);
});

// --- truncation ----------------------------------------------------------------------------------
const bmA = L.bitmaps[0];
const cuts: [string, number][] = [
  ['inside the header', 60],
  ['inside the v3 header fields', 100],
  ['after the header cluster', CS],
  ['inside the L1 table', L.l1Offset + 4],
  ['inside the L2 table', L.l2Offsets[0] + 100],
  ["inside bmA's data cluster", bmA.dataClusters[0] + 100],
  ["inside bmA's table", bmA.tableOffset + 4],
  ['inside the bitmap directory', L.bitmapsExt!.dirOffset + 10],
];
for (const [where, at] of cuts) {
  corruptCase(`file truncated ${where} (at ${at}) -> E_CORRUPT`, 'E_CORRUPT', (b) => b.subarray(0, at));
}
for (const [where, at] of cuts.filter(([w]) => w.startsWith('inside the L') || w.includes('bmA'))) {
  test(`file truncated ${where}: the error keeps the offset and says what the user can do`, () => {
    const s = scenario();
    edit(s.top, (b) => b.subarray(0, at));
    const e = expectError(s.top, 'E_CORRUPT');
    assert.equal(typeof e.offset, 'number', e.message);
    assert.ok(e.message.includes(`offset ${e.offset}`) || e.message.includes(`(offset `), `names the offset: ${e.message}`);
    assert.ok(e.message.endsWith(TRUNCATED_ADVICE), `ends with the advice: ${e.message}`);
  });
}

// --- bitmaps extension and directory --------------------------------------------------------------
const bx = L.bitmapsExt!;
corruptCase('bitmap directory offset past EOF -> E_CORRUPT', 'E_CORRUPT', setU64(bx.at + 16, BigInt(pastEof)));
corruptCase('bitmap directory size 0 -> E_CORRUPT', 'E_CORRUPT', setU64(bx.at + 8, 0n));
corruptCase('bitmap directory size huge (1 TiB) -> E_CORRUPT', 'E_CORRUPT', setU64(bx.at + 8, 1n << 40n));
corruptCase('bitmap count larger than the directory -> E_CORRUPT', 'E_CORRUPT', setU32(bx.at, 3));
corruptCase('bitmap table size not matching the disk -> E_CORRUPT', 'E_CORRUPT', setU32(bmA.at + 8, bmA.tableSize + 1));
corruptCase('bitmap table offset past EOF -> E_CORRUPT', 'E_CORRUPT', setU64(bmA.at, BigInt(pastEof)));
corruptCase('bitmap table entry with reserved bits 1..8 -> E_CORRUPT', 'E_CORRUPT', (b) => {
  b[bmA.tableOffset + 7] |= 0x02;
});
corruptCase('bitmap table entry with reserved bits 56..63 -> E_CORRUPT', 'E_CORRUPT', (b) => {
  b[bmA.tableOffset] |= 0x01;
});
corruptCase('bitmap table entry pointing past EOF -> E_CORRUPT', 'E_CORRUPT', setU64(bmA.tableOffset, BigInt(pastEof)));
corruptCase('bitmap granularity bits 8 -> E_CORRUPT', 'E_CORRUPT', (b) => void (b[bmA.at + 17] = 8));
corruptCase('bitmap granularity bits 40 -> E_CORRUPT', 'E_CORRUPT', (b) => void (b[bmA.at + 17] = 40));
corruptCase('bitmap name length 0 -> E_CORRUPT', 'E_CORRUPT', (b) => void b.writeUInt16BE(0, bmA.at + 18));
corruptCase('bitmap reserved flag bits -> E_CORRUPT', 'E_CORRUPT', setU32(bmA.at + 12, 2 | (1 << 7)));
corruptCase('duplicate bitmap names -> E_CORRUPT', 'E_CORRUPT', (b) => {
  const second = L.bitmaps[1];
  b.write('bmA', second.at + 24 + second.extraSize, 'utf8');
});

// --- header extensions and backing name -----------------------------------------------------------
const bitmapsExtHdr = L.extensions.find((e) => e.type === EXT_BITMAPS_TYPE)!;
const bfmtExtHdr = L.extensions.find((e) => e.type === EXT_BACKING_FORMAT_TYPE)!;
corruptCase('bitmaps extension length overrunning the header cluster -> E_CORRUPT', 'E_CORRUPT', setU32(bitmapsExtHdr.at + 4, CS));
corruptCase('backing format extension length overrunning the header cluster -> E_CORRUPT', 'E_CORRUPT', setU32(bfmtExtHdr.at + 4, 0xffffff00));
corruptCase('header_length larger than a cluster -> E_CORRUPT', 'E_CORRUPT', setU32(HDR.headerLength, CS + 8));
test('backing file name length 0 (offset set) reads as no backing, as QEMU 7.2 does', () => {
  const s = scenario();
  edit(s.top, setU32(HDR.backingSize, 0));
  const q = qemuInfoChain(s.top);
  assert.equal(q.length, 1, 'qemu-img sees a single layer');
  assert.equal(q[0]['backing-filename'], undefined);
  const r = inspect(s.top);
  assert.equal(r.layers.length, 1);
  assert.equal(r.layers[0].backingFile, null);
});
corruptCase('backing file name length 4096 -> E_CORRUPT', 'E_CORRUPT', setU32(HDR.backingSize, 4096));
corruptCase('backing file name length 0xffffffff -> E_CORRUPT', 'E_CORRUPT', setU32(HDR.backingSize, 0xffffffff));
corruptCase('backing file name offset past the header cluster -> E_CORRUPT', 'E_CORRUPT', setU64(HDR.backingOffset, BigInt(CS - 4)));

// --- unsupported features -------------------------------------------------------------------------
corruptCase('crypt_method 1 (AES) -> E_UNSUPPORTED', 'E_UNSUPPORTED', setU32(HDR.cryptMethod, 1));

test('LUKS-encrypted qcow2 made by qemu-img -> E_UNSUPPORTED', () => {
  const s = scenario();
  const p = path.join(s.dir, 'luks.qcow2');
  // qemu-img times PBKDF2 on a new thread's CPU clock to pick the iteration count, and this build
  // gives up when its first, short round reads 0 ms ("Unable to get accurate CPU usage": a known
  // QEMU bug, fixed upstream in 2025 by only failing after several rounds). That is the test's
  // set-up failing, not Strata: try again, a few times, on that message only.
  for (let attempt = 1; ; attempt++) {
    try {
      qemuImg(
        'create', '-q', '-f', 'qcow2',
        '--object', 'secret,id=sec0,data=strata-test',
        '-o', 'encrypt.format=luks,encrypt.key-secret=sec0,encrypt.iter-time=100',
        p, '1M',
      );
      break;
    } catch (e) {
      if (attempt >= 5 || !/accurate CPU usage/.test((e as Error).message)) throw e;
      fs.rmSync(p, { force: true });
    }
  }
  expectError(p, 'E_UNSUPPORTED');
});

test('external data file (qemu-img create -o data_file=...) -> E_UNSUPPORTED', () => {
  const s = scenario();
  const p = path.join(s.dir, 'meta.qcow2');
  qemuImg('create', '-q', '-f', 'qcow2', '-o', `data_file=${path.join(s.dir, 'data.raw')}`, p, '1M');
  expectError(p, 'E_UNSUPPORTED');
});

// --- backing resolution ---------------------------------------------------------------------------
test('missing backing file -> E_BACKING_MISSING naming the layer that refers to it', () => {
  const s = scenario();
  fs.rmSync(s.base);
  const e = expectError(s.top, 'E_BACKING_MISSING');
  assert.ok(e.message.includes('base.qcow2'), `message also names the missing file: ${e.message}`);
});

test('missing backing file, partial report: the readable layers, the missing file named, every checkpoint unknown', () => {
  const s = scenario();
  const full = inspect(s.top);
  assert.ok(full.checkpoints.length > 0 && full.checkpoints.every((c) => c.state === 'ok'), 'the intact chain has ok checkpoints');
  fs.rmSync(s.base);
  const r = inspectPartial(s.top);
  assert.deepEqual(r.layers.map((l) => l.path), [s.top]);
  assert.deepEqual(r.layers[0], full.layers[0], 'the top layer reads as before: facts and bitmaps');
  assert.deepEqual(r.missingBacking, { file: 'base.qcow2', expectedAt: s.base, referencedBy: s.top });
  assert.deepEqual(r.checkpoints.map((c) => c.name), full.checkpoints.map((c) => c.name));
  for (const c of r.checkpoints) {
    assert.equal(c.state, 'unknown', c.name);
    assert.equal(c.dirtyBytes, null, c.name);
    assert.ok(c.problems[0].includes(s.base) && c.problems[0].includes('missing'), c.problems[0]);
  }
  // the whole-chain reading still refuses it
  expectError(s.top, 'E_BACKING_MISSING');
});

test('partial report of a complete chain: no missingBacking, same as inspect', () => {
  const s = scenario();
  const r = inspectPartial(s.top);
  const full = inspect(s.top);
  assert.equal(r.missingBacking, undefined);
  assert.deepEqual({ ...r, scannedAt: '', scanMs: 0 }, { ...full, scannedAt: '', scanMs: 0 });
});

test('missing backing deeper in the chain -> E_BACKING_MISSING naming the layer that refers to it, not the top; the partial report reads down to it', () => {
  const s = scenario();
  const mid = path.join(s.dir, 'mid.qcow2');
  const top = path.join(s.dir, 'top.qcow2');
  qemuImg('create', '-q', '-f', 'qcow2', '-b', 'bm.qcow2', '-F', 'qcow2', mid);
  qemuImg('create', '-q', '-f', 'qcow2', '-b', 'mid.qcow2', '-F', 'qcow2', top);
  fs.rmSync(s.base);
  // top -> mid -> bm.qcow2 -> (missing) base.qcow2: bm.qcow2 holds the dangling reference.
  const e = expectError(s.top, 'E_BACKING_MISSING', () => inspect(top));
  assert.ok(e.message.includes(s.base), `message also names the missing file: ${e.message}`);
  // the partial reading: every layer down to the one that names it, checkpoints unknown
  const r = inspectPartial(top);
  assert.deepEqual(r.layers.map((l) => l.path), [top, mid, s.top]);
  assert.deepEqual(r.missingBacking, { file: 'base.qcow2', expectedAt: s.base, referencedBy: s.top });
  assert.ok(r.checkpoints.length > 0 && r.checkpoints.every((c) => c.state === 'unknown'));
});

test('backing loop a -> b -> a (qemu-img rebase -u) -> E_BACKING_LOOP', () => {
  const s = scenario();
  const a = path.join(s.dir, 'a.qcow2');
  const b = path.join(s.dir, 'b.qcow2');
  qemuImg('create', '-q', '-f', 'qcow2', a, '1M');
  qemuImg('create', '-q', '-f', 'qcow2', '-b', 'a.qcow2', '-F', 'qcow2', b);
  qemuImg('rebase', '-u', '-b', 'b.qcow2', '-F', 'qcow2', a);
  assert.throws(() => qemuInfoChain(a), /infinite loop/, 'QEMU agrees it is a loop');
  // Opened from a: a -> b -> a; b is the layer whose backing closes the loop.
  const e = expectError(b, 'E_BACKING_LOOP', () => inspect(a));
  assert.ok(e.message.includes(a), `message names where it loops back to: ${e.message}`);
});

test('backing loop onto itself (rebase -u -b self) -> E_BACKING_LOOP', () => {
  const s = scenario();
  const a = path.join(s.dir, 'self.qcow2');
  qemuImg('create', '-q', '-f', 'qcow2', a, '1M');
  qemuImg('rebase', '-u', '-b', 'self.qcow2', '-F', 'qcow2', a);
  expectError(a, 'E_BACKING_LOOP');
});

test('backing json:{...} (qemu-img rebase -u) -> E_BACKING_PROTOCOL', () => {
  const s = scenario();
  qemuImg('rebase', '-u', '-b', `json:{"driver":"qcow2","file":{"driver":"file","filename":"${s.base}"}}`, '-F', 'qcow2', s.top);
  expectError(s.top, 'E_BACKING_PROTOCOL');
});

test('backing nbd://host/x (qemu-img rebase -u) -> E_BACKING_PROTOCOL', () => {
  const s = scenario();
  qemuImg('rebase', '-u', '-b', 'nbd://host/x', '-F', 'raw', s.top);
  expectError(s.top, 'E_BACKING_PROTOCOL');
});

// --- fuzz -----------------------------------------------------------------------------------------
test('fuzz: 300 seeded mutations either read or fail with a StrataError, never hang, memory bounded', async (t) => {
  const images = [bm.path, small.path, ext.path];
  const cfg = { seed: 0x5eed2024, count: 300, images };
  const child = spawn(process.execPath, ['--import', 'tsx', path.join(import.meta.dirname, 'fuzz-child.ts'), JSON.stringify(cfg)], {
    cwd: path.resolve(import.meta.dirname, '../..'),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  t.onTestFinished(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });
  let out = '';
  let err = '';
  child.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
  child.stderr.setEncoding('utf8').on('data', (d: string) => (err += d));
  const LIMIT_MS = 90_000;
  const finished = await new Promise<boolean>((resolve) => {
    const timer = setTimeout(() => resolve(false), LIMIT_MS);
    child.on('exit', () => {
      clearTimeout(timer);
      resolve(true);
    });
  });
  const lines = out.trim().split('\n').filter(Boolean).map((l) => JSON.parse(l));
  const last = lines[lines.length - 1];
  if (!finished) {
    child.kill('SIGKILL');
    assert.fail(`fuzz hung for ${LIMIT_MS} ms at iteration ${last?.i}: ${JSON.stringify(last?.desc)}`);
  }
  assert.equal(child.exitCode, 0, `fuzz child failed: ${err}`);
  assert.ok(last?.done, `fuzz child did not finish: ${err}`);
  assert.deepEqual(last.bad, [], 'every failure is a StrataError naming its file');
  const growth = last.rssMax - last.rssStart;
  assert.ok(growth < 300 * MiB, `rss grew by ${Math.round(growth / MiB)} MiB`);
  const failures = Object.values(last.codes as Record<string, number>).reduce((a, b) => a + b, 0);
  assert.equal(last.ok + failures, 300);
  // The mutations must actually reach the reader's checks, and leave some images readable.
  assert.ok(failures >= 100, `only ${failures} mutations were refused: ${JSON.stringify(last.codes)}`);
  assert.ok(last.ok >= 10, `only ${last.ok} mutations were readable`);
  await t.annotate(`ok ${last.ok}, refused ${JSON.stringify(last.codes)}, rss +${Math.round(growth / MiB)} MiB, slowest #${last.slowest.i} ${Math.round(last.slowest.ms)} ms`);
});
