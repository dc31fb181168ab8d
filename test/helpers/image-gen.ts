// Builds real qcow2/raw chains with QEMU's own tools (qemu-img, qemu-io, qemu-storage-daemon), never
// with hand-written bytes, and records what the construction implies: layers, backing strings,
// bitmaps with their flags and the bytes each bitmap must hold. The reader is then checked against
// these expectations and against QEMU's own view of the same files (qemu-img info/map, qemu-nbd).
//
// Every random choice comes from a seeded generator, so a failing case rebuilds identically.
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { qemuImg, run, waitListening } from './qemu.ts';

export const KiB = 1024;
export const MiB = 1024 * 1024;

export interface Extent {
  start: number;
  length: number;
}

// ---------------------------------------------------------------------------------------------
// Seeded pseudo-random numbers (mulberry32): same seed, same images, same failure.

export type Rng = () => number;

export function rng(seed: number): Rng {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export const randInt = (r: Rng, lo: number, hi: number) => lo + Math.floor(r() * (hi - lo + 1)); // inclusive

/** Seed derived from a case name, so adding a case does not reshuffle the others. */
export function seedOf(name: string): number {
  let h = 2166136261;
  for (let i = 0; i < name.length; i++) h = Math.imul(h ^ name.charCodeAt(i), 16777619);
  return h >>> 0;
}

// ---------------------------------------------------------------------------------------------
// Extent sets kept as plain sorted, merged arrays (independent of the reader's own extents code).

export function normalize(list: Extent[]): Extent[] {
  const s = list.filter((e) => e.length > 0).sort((a, b) => a.start - b.start);
  const out: Extent[] = [];
  for (const e of s) {
    const last = out[out.length - 1];
    if (last && e.start <= last.start + last.length) {
      last.length = Math.max(last.length, e.start + e.length - last.start);
    } else out.push({ start: e.start, length: e.length });
  }
  return out;
}

export const bytesOf = (list: Extent[]) => list.reduce((n, e) => n + e.length, 0);

// ---------------------------------------------------------------------------------------------
// Guest operations, as qemu-io commands. Each one dirties every recording bitmap of the image over
// the request rounded out to the bitmap granularity (checked against qemu-nbd on a known bitmap).

export type Op =
  | { op: 'write'; off: number; len: number; pattern?: number }
  | { op: 'zero'; off: number; len: number; unmap?: boolean }
  | { op: 'discard'; off: number; len: number }
  | { op: 'compress'; off: number; len: number; pattern?: number };

export function opCommand(o: Op): string {
  switch (o.op) {
    case 'write':
      return `write -P ${o.pattern ?? 0x5a} ${o.off} ${o.len}`;
    case 'zero':
      return `write -z${o.unmap ? ' -u' : ''} ${o.off} ${o.len}`;
    case 'discard':
      return `discard ${o.off} ${o.len}`;
    case 'compress':
      return `write -c -P ${o.pattern ?? 0x33} ${o.off} ${o.len}`;
  }
}

/** n writes at offsets aligned to `align`, lengths 1..maxUnits * align, inside [0, size). */
export function randomWrites(r: Rng, size: number, n: number, align: number, maxUnits: number): Op[] {
  const ops: Op[] = [];
  const units = Math.floor(size / align);
  for (let i = 0; i < n; i++) {
    const u = randInt(r, 0, units - 1);
    const len = Math.min(randInt(r, 1, maxUnits), units - u) * align;
    ops.push({ op: 'write', off: u * align, len, pattern: randInt(r, 1, 255) });
  }
  return ops;
}

// ---------------------------------------------------------------------------------------------
// Images

export interface ExpectedLayer {
  path: string;
  format: 'qcow2' | 'raw';
  virtualSize: number;
  clusterSize: number | null;
  version: 2 | 3 | null;
  extendedL2: boolean;
  /** the backing string exactly as written in the header */
  backingFile: string | null;
  backingFormat: string | null;
}

export interface ExpectedBitmap {
  layer: string;
  name: string;
  granularity: number;
  /** 'auto' on disk */
  recording: boolean;
  /** 'in-use' on disk: left by a process killed while it had the image open read-write */
  inUse: boolean;
  /** dirty bytes implied by the construction; null when the on-disk contents cannot be trusted */
  dirty: Extent[] | null;
}

interface BitmapState {
  name: string;
  granularity: number;
  recording: boolean;
  inUse: boolean;
  dirty: Extent[];
}

export interface Qcow2Options {
  cluster?: number;
  compat?: '0.10' | '1.1';
  extendedL2?: boolean;
  backing?: Img;
  /** 'relative' (default): path relative to the new image's folder; 'absolute': the backing's absolute path */
  backingStyle?: 'relative' | 'absolute';
}

export class Img {
  readonly bitmaps: BitmapState[] = [];
  private constructor(
    readonly path: string,
    readonly format: 'qcow2' | 'raw',
    readonly size: number,
    readonly clusterSize: number | null,
    readonly version: 2 | 3 | null,
    readonly extendedL2: boolean,
    readonly backing: Img | null,
    readonly backingFile: string | null,
  ) {}

  static qcow2(p: string, size: number, o: Qcow2Options = {}): Img {
    fs.mkdirSync(path.dirname(p), { recursive: true });
    const cluster = o.cluster ?? 64 * KiB;
    const compat = o.compat ?? '1.1';
    const opts = [`cluster_size=${cluster}`, `compat=${compat}`];
    if (o.extendedL2) opts.push('extended_l2=on');
    const args = ['create', '-q', '-f', 'qcow2', '-o', opts.join(',')];
    let backingFile: string | null = null;
    if (o.backing) {
      backingFile = (o.backingStyle ?? 'relative') === 'absolute' ? o.backing.path : path.relative(path.dirname(p), o.backing.path);
      args.push('-b', backingFile, '-F', o.backing.format);
    }
    args.push(p, String(size));
    qemuImg(...args);
    return new Img(p, 'qcow2', size, cluster, compat === '0.10' ? 2 : 3, !!o.extendedL2, o.backing ?? null, backingFile);
  }

  /**
   * A raw image written over its whole length. A sparse raw file would not do: QEMU reports the
   * holes of a raw file as allocated zeroes (file-posix SEEK_HOLE), while the reader, which never
   * looks at host-file holes, reports every byte of a raw layer as data. Writing every byte makes
   * both views the same without hiding anything qcow2-specific.
   */
  static raw(p: string, size: number, pattern = 1): Img {
    fs.mkdirSync(path.dirname(p), { recursive: true });
    qemuImg('create', '-q', '-f', 'raw', p, String(size));
    run('qemu-io', ['-f', 'raw', '-c', `write -P ${pattern} 0 ${size}`, p]);
    return new Img(p, 'raw', size, null, null, false, null, null);
  }

  /** An image QEMU made some other way (qemu-img convert): described, not built, here. */
  static adopt(p: string, size: number, cluster: number): Img {
    return new Img(p, 'qcow2', size, cluster, 3, false, null, null);
  }

  addBitmap(name: string, granularity: number, o: { disabled?: boolean } = {}): this {
    qemuImg('bitmap', '--add', ...(o.disabled ? ['--disable'] : []), '-g', String(granularity), '-f', 'qcow2', this.path, name);
    this.bitmaps.push({ name, granularity, recording: !o.disabled, inUse: false, dirty: [] });
    return this;
  }

  disable(name: string): this {
    qemuImg('bitmap', '--disable', '-f', 'qcow2', this.path, name);
    this.bm(name).recording = false;
    return this;
  }

  enable(name: string): this {
    qemuImg('bitmap', '--enable', '-f', 'qcow2', this.path, name);
    this.bm(name).recording = true;
    return this;
  }

  private bm(name: string): BitmapState {
    const b = this.bitmaps.find((x) => x.name === name);
    if (!b) throw new Error(`${this.path}: no bitmap ${name} in the construction`);
    return b;
  }

  private record(ops: Op[]): void {
    for (const o of ops) {
      if (o.off < 0 || o.len <= 0 || o.off + o.len > this.size) throw new Error(`op outside the disk: ${opCommand(o)} (size ${this.size})`);
      for (const b of this.bitmaps) {
        if (!b.recording || b.inUse) continue;
        const g = b.granularity;
        const s = Math.floor(o.off / g) * g;
        const e = Math.min(this.size, Math.ceil((o.off + o.len) / g) * g);
        b.dirty.push({ start: s, length: e - s });
      }
    }
  }

  /** Runs the operations with qemu-io (one process, image opened read-write, closed cleanly). */
  io(ops: Op[]): this {
    if (ops.length === 0) return this;
    // Chunks keep command lines short.
    for (let i = 0; i < ops.length; i += 200) {
      const chunk = ops.slice(i, i + 200);
      run('qemu-io', ['-f', this.format, ...chunk.flatMap((o) => ['-c', opCommand(o)]), this.path]);
    }
    this.record(ops);
    return this;
  }

  /**
   * Opens the image read-write in an interactive qemu-io fed from a pipe, runs `ops` (they complete:
   * qemu-io prints its result), then kills it with SIGKILL. QEMU marked every persistent bitmap
   * in-use on disk when it opened the image, and never got to store them back.
   */
  async crashQemuIo(ops: Op[]): Promise<this> {
    const child = spawn('qemu-io', ['-f', this.format, this.path], { stdio: ['pipe', 'pipe', 'pipe'] });
    track(child);
    let out = '';
    let err = '';
    child.stderr.on('data', (d) => (err += d));
    const results = ops.length;
    let early: (() => void) | undefined;
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`qemu-io ${this.path}: no answer after 10 s: ${out} ${err}`)), 10_000);
      early = () => {
        clearTimeout(timer);
        reject(new Error(`qemu-io ${this.path} exited early: ${err}`));
      };
      child.on('exit', early);
      child.stdout.on('data', (d) => {
        out += d;
        const done = (out.match(/(?:wrote|discard) \d+\/\d+ bytes/g) ?? []).length;
        if (done >= results) {
          clearTimeout(timer);
          resolve();
        }
      });
      // The open happens before qemu-io reads its first command: an answer proves the image is open.
      for (const o of ops) child.stdin.write(opCommand(o) + '\n');
    }).catch((e) => {
      child.kill('SIGKILL');
      throw e;
    });
    child.off('exit', early!);
    const exited = once(child, 'exit');
    child.kill('SIGKILL');
    await exited;
    this.record(ops);
    for (const b of this.bitmaps) b.inUse = true;
    return this;
  }

  /**
   * Opens the image in qemu-storage-daemon (read-write, bitmaps loaded), proves over QMP that the
   * node and its bitmaps are there, adds a persistent bitmap live (QEMU stores it only at close), then
   * kill -9. Every bitmap on disk is left in-use; the live one is never written.
   */
  async crashDaemon(liveBitmap = 'added-live'): Promise<this> {
    const sock = path.join(path.dirname(this.path), `qmp-${process.pid}-${Date.now()}.sock`);
    const child = spawn(
      'qemu-storage-daemon',
      [
        '--blockdev', `driver=file,node-name=file0,filename=${this.path}`,
        '--blockdev', `driver=${this.format},node-name=fmt0,file=file0`,
        '--chardev', `socket,id=m,path=${sock},server=on,wait=off`,
        '--monitor', 'chardev=m',
      ],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    track(child);
    let err = '';
    child.stderr.on('data', (d) => (err += d));
    try {
      await waitListening(sock, child, () => `qemu-storage-daemon: ${err}`);
      const qmp = await Qmp.connect(sock);
      try {
        await qmp.cmd('qmp_capabilities');
        const nodes = (await qmp.cmd('query-named-block-nodes', { flat: true })) as any[];
        const node = nodes.find((n) => n['node-name'] === 'fmt0');
        const names = (node?.['dirty-bitmaps'] ?? []).map((b: any) => b.name).sort();
        const want = this.bitmaps.map((b) => b.name).sort();
        if (JSON.stringify(names) !== JSON.stringify(want)) throw new Error(`daemon sees bitmaps ${names}, expected ${want}`);
        await qmp.cmd('block-dirty-bitmap-add', { node: 'fmt0', name: liveBitmap, persistent: true });
      } finally {
        qmp.close();
      }
    } catch (e) {
      child.kill('SIGKILL');
      throw e;
    }
    const exited = once(child, 'exit');
    child.kill('SIGKILL');
    await exited;
    fs.rmSync(sock, { force: true });
    for (const b of this.bitmaps) b.inUse = true;
    return this;
  }

  expectedLayer(): ExpectedLayer {
    return {
      path: this.path,
      format: this.format,
      virtualSize: this.size,
      clusterSize: this.clusterSize,
      version: this.version,
      extendedL2: this.extendedL2,
      backingFile: this.backingFile,
      backingFormat: this.backing ? this.backing.format : null,
    };
  }

  expectedBitmaps(): ExpectedBitmap[] {
    return this.bitmaps.map((b) => ({
      layer: this.path,
      name: b.name,
      granularity: b.granularity,
      recording: b.recording,
      inUse: b.inUse,
      dirty: b.inUse ? null : normalize(b.dirty),
    }));
  }

  /** top first */
  chain(): Img[] {
    const out: Img[] = [];
    for (let i: Img | null = this; i; i = i.backing) out.push(i);
    return out;
  }
}

// ---------------------------------------------------------------------------------------------
// Child processes: every one is tracked so a test can kill what it started, by handle.

const live = new Set<ChildProcess>();
function track(c: ChildProcess): void {
  live.add(c);
  c.on('exit', () => live.delete(c));
}

/** SIGKILL every child this module started that is still running (for t.after / after). */
export async function killChildren(): Promise<void> {
  const waits: Promise<unknown>[] = [];
  for (const c of live) {
    if (c.exitCode === null && c.signalCode === null) {
      waits.push(once(c, 'exit'));
      c.kill('SIGKILL');
    }
  }
  await Promise.all(waits);
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

class Qmp {
  private buf = '';
  private waiting: ((v: any) => void)[] = [];
  private constructor(private s: net.Socket) {
    s.setEncoding('utf8');
    s.on('data', (d: string) => {
      this.buf += d;
      let i: number;
      while ((i = this.buf.indexOf('\n')) >= 0) {
        const line = this.buf.slice(0, i).trim();
        this.buf = this.buf.slice(i + 1);
        if (!line) continue;
        const msg = JSON.parse(line);
        if ('return' in msg || 'error' in msg || 'QMP' in msg) this.waiting.shift()?.(msg);
      }
    });
  }
  static async connect(sock: string): Promise<Qmp> {
    const s = net.connect(sock);
    await once(s, 'connect');
    const q = new Qmp(s);
    await new Promise((r) => q.waiting.push(r)); // greeting
    return q;
  }
  async cmd(execute: string, args?: object): Promise<unknown> {
    const p = new Promise<any>((r) => this.waiting.push(r));
    this.s.write(JSON.stringify(args ? { execute, arguments: args } : { execute }) + '\n');
    const msg = await p;
    if (msg.error) throw new Error(`QMP ${execute}: ${msg.error.desc}`);
    return msg.return;
  }
  close(): void {
    this.s.destroy();
  }
}

// ---------------------------------------------------------------------------------------------
// QEMU's view of a bitmap's contents: export it with qemu-nbd and read it back with qemu-img map.

let nbdSeq = 0;

/**
 * Dirty extents of bitmap `name` stored in `layer`, as QEMU reads them.
 *
 * qemu-nbd 7.2 `-r -B NAME` exports a persistent bitmap whether it is recording or not (measured).
 * The "Enabled bitmap incompatible with readonly export" check in nbd/server.c fires only when the
 * node itself is writable (the QMP block-export-add case of domain.md, on a read-write node); with -r
 * qemu-nbd opens the image read-only, so nothing can dirty the bitmap and it is exported as is.
 * It refuses a bitmap that is in-use on disk ("Bitmap 'X' is inconsistent and cannot be used"):
 * then this rejects with that message.
 * `qemu-img map` over the export with x-dirty-bitmap reports dirty areas as "data": false.
 * -t keeps the server alive whatever the client does, so we own its end; -e 2 lets the readiness
 * probe and qemu-img be two clients.
 */
export async function nbdBitmapExtents(layer: string, format: string, name: string, sockDir: string): Promise<Extent[]> {
  const sock = path.join(sockDir, `nbd-${process.pid}-${nbdSeq++}.sock`);
  const child = spawn('qemu-nbd', ['-r', '-t', '-e', '2', '-f', format, '-B', name, '-k', sock, layer], { stdio: ['ignore', 'pipe', 'pipe'] });
  track(child);
  let err = '';
  child.stderr.on('data', (d) => (err += d));
  try {
    await waitListening(sock, child, () => `qemu-nbd ${layer} -B ${name}: ${err.trim()}`);
    let out: string;
    try {
      out = await runAsync('qemu-img', [
        'map',
        '--output=json',
        '--image-opts',
        `driver=nbd,server.type=unix,server.path=${sock},x-dirty-bitmap=qemu:dirty-bitmap:${name}`,
      ]);
    } catch (e) {
      // qemu-nbd listens before it sets up the export: a refused bitmap shows up as a dropped
      // connection here, and the reason is in qemu-nbd's own stderr once it has exited.
      await Promise.race([once(child, 'exit'), sleep(2000)]);
      throw new Error(`qemu-nbd ${layer} -B ${name}: ${err.trim() || '(no message)'}; ${(e as Error).message}`);
    }
    const raw = JSON.parse(out) as { start: number; length: number; data: boolean }[];
    return normalize(raw.filter((e) => !e.data).map((e) => ({ start: e.start, length: e.length })));
  } finally {
    if (child.exitCode === null && child.signalCode === null) {
      const exited = once(child, 'exit');
      child.kill('SIGTERM');
      await exited;
    }
    fs.rmSync(sock, { force: true });
  }
}

function runAsync(cmd: string, args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    const c = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    track(c);
    let out = '';
    let err = '';
    c.stdout.on('data', (d) => (out += d));
    c.stderr.on('data', (d) => (err += d));
    c.on('exit', (code) => (code === 0 ? resolve(out) : reject(new Error(`${cmd} ${args.join(' ')} failed (${code}): ${err}`))));
  });
}

// ---------------------------------------------------------------------------------------------
// The generated cases

export interface GeneratedCase {
  name: string;
  dir: string;
  top: string;
  /** top first */
  layers: ExpectedLayer[];
  expectedBitmaps: ExpectedBitmap[];
  /** bitmaps a crashed QEMU had in memory only: must not be on disk */
  absentBitmaps: { layer: string; name: string }[];
}

function finish(name: string, dir: string, top: Img, absent: { layer: string; name: string }[] = []): GeneratedCase {
  const chain = top.chain();
  return {
    name,
    dir,
    top: top.path,
    layers: chain.map((i) => i.expectedLayer()),
    expectedBitmaps: chain.flatMap((i) => i.expectedBitmaps()),
    absentBitmaps: absent,
  };
}

type Builder = (dir: string, r: Rng) => GeneratedCase | Promise<GeneratedCase>;

/** Distinct cluster indexes, for compressed writes (qcow2 compresses only into an empty cluster). */
function distinctClusters(r: Rng, clusters: number, n: number, avoid = new Set<number>()): number[] {
  const out: number[] = [];
  while (out.length < n && out.length + avoid.size < clusters) {
    const c = randInt(r, 0, clusters - 1);
    if (!avoid.has(c)) {
      avoid.add(c);
      out.push(c);
    }
  }
  return out;
}

const q = (dir: string, rel: string) => path.join(dir, rel);

export const CASES: [string, Builder][] = [
  // --- one layer, each cluster size and version ------------------------------------------------
  ['c512-v3-bitmaps', (d, r) => {
    const size = 1 * MiB;
    const a = Img.qcow2(q(d, 'a.qcow2'), size, { cluster: 512 }).addBitmap('g512', 512).addBitmap('g64k', 64 * KiB);
    a.io(randomWrites(r, size, 40, 512, 16));
    a.addBitmap('late', 4 * KiB).io(randomWrites(r, size, 10, 512, 4));
    return finish('c512-v3-bitmaps', d, a);
  }],
  ['c512-v2', (d, r) => {
    const size = 1 * MiB;
    const a = Img.qcow2(q(d, 'a.qcow2'), size, { cluster: 512, compat: '0.10' });
    a.io([...randomWrites(r, size, 30, 512, 8), { op: 'zero', off: 4096, len: 8192 }, { op: 'discard', off: 0, len: 64 * KiB }]);
    return finish('c512-v2', d, a);
  }],
  ['c512-two-bitmap-clusters', (d, r) => {
    // 4 MiB at 512 B granularity = 8192 bits = two 512-byte bitmap data clusters.
    const size = 4 * MiB;
    const a = Img.qcow2(q(d, 'a.qcow2'), size, { cluster: 512 }).addBitmap('fine', 512).addBitmap('coarse', 2 * MiB);
    a.io(randomWrites(r, size, 120, 512, 8));
    return finish('c512-two-bitmap-clusters', d, a);
  }],
  ['c4k-v3-disabled', (d, r) => {
    const size = 4 * MiB;
    const a = Img.qcow2(q(d, 'a.qcow2'), size, { cluster: 4 * KiB }).addBitmap('a', 4 * KiB);
    a.io(randomWrites(r, size, 20, 4 * KiB, 8));
    a.addBitmap('b', 1 * MiB, { disabled: true }).io(randomWrites(r, size, 10, 512, 20));
    a.addBitmap('c', 512).disable('a').io(randomWrites(r, size, 15, 512, 3));
    return finish('c4k-v3-disabled', d, a);
  }],
  ['c4k-v2', (d, r) => {
    const size = 2 * MiB;
    const a = Img.qcow2(q(d, 'a.qcow2'), size, { cluster: 4 * KiB, compat: '0.10' });
    a.io(randomWrites(r, size, 25, 4 * KiB, 6));
    return finish('c4k-v2', d, a);
  }],
  ['c64k-five-bitmaps', (d, r) => {
    const size = 4 * MiB;
    const a = Img.qcow2(q(d, 'a.qcow2'), size);
    a.addBitmap('g512', 512).io(randomWrites(r, size, 8, 512, 10));
    a.addBitmap('g4k', 4 * KiB).io(randomWrites(r, size, 8, 4 * KiB, 4));
    a.addBitmap('g64k', 64 * KiB, { disabled: true }).io(randomWrites(r, size, 8, 512, 100));
    a.addBitmap('g1m', 1 * MiB).io(randomWrites(r, size, 4, 64 * KiB, 2));
    a.addBitmap('g2m', 2 * MiB).disable('g4k').io(randomWrites(r, size, 4, 512, 1));
    return finish('c64k-five-bitmaps', d, a);
  }],
  ['c2m-v3', (d, r) => {
    const size = 16 * MiB;
    const a = Img.qcow2(q(d, 'a.qcow2'), size, { cluster: 2 * MiB }).addBitmap('g2m', 2 * MiB).addBitmap('g64k', 64 * KiB);
    a.io(randomWrites(r, size, 6, 4 * KiB, 16));
    return finish('c2m-v3', d, a);
  }],
  ['c2m-v2', (d, r) => {
    const size = 8 * MiB;
    const a = Img.qcow2(q(d, 'a.qcow2'), size, { cluster: 2 * MiB, compat: '0.10' });
    a.io(randomWrites(r, size, 4, 64 * KiB, 4));
    return finish('c2m-v2', d, a);
  }],
  ['c64k-v2-chain-zero-over-data', (d, r) => {
    // v2 has no zero flag: QEMU falls back to writing zeroes as data.
    const size = 2 * MiB;
    const base = Img.qcow2(q(d, 'base.qcow2'), size, { compat: '0.10' }).io([{ op: 'write', off: 0, len: size, pattern: 7 }]);
    const top = Img.qcow2(q(d, 'top.qcow2'), size, { compat: '0.10', backing: base });
    top.io([{ op: 'zero', off: 128 * KiB, len: 256 * KiB }, ...randomWrites(r, size, 5, 64 * KiB, 2)]);
    return finish('c64k-v2-chain-zero-over-data', d, top);
  }],
  ['odd-size', (d, r) => {
    // Virtual size not a multiple of the cluster nor of the granularities: the last granule is partial.
    const size = 3 * MiB + 1536;
    const a = Img.qcow2(q(d, 'a.qcow2'), size).addBitmap('g64k', 64 * KiB).addBitmap('g4k', 4 * KiB).addBitmap('g2m', 2 * MiB);
    a.io([...randomWrites(r, size, 10, 512, 30), { op: 'write', off: size - 1024, len: 1024, pattern: 9 }]);
    return finish('odd-size', d, a);
  }],
  ['full-dirty', (d) => {
    const size = 4 * MiB;
    const a = Img.qcow2(q(d, 'a.qcow2'), size, { cluster: 4 * KiB }).addBitmap('all', 512).addBitmap('none', 64 * KiB, { disabled: true });
    a.io([{ op: 'write', off: 0, len: size, pattern: 0x11 }]);
    return finish('full-dirty', d, a);
  }],
  ['empty', (d) => {
    const a = Img.qcow2(q(d, 'a.qcow2'), 1 * MiB).addBitmap('clean', 64 * KiB);
    return finish('empty', d, a);
  }],

  // --- extended L2 -----------------------------------------------------------------------------
  ['extl2-16k', (d, r) => {
    const size = 2 * MiB; // subclusters of 512 B
    const a = Img.qcow2(q(d, 'a.qcow2'), size, { cluster: 16 * KiB, extendedL2: true }).addBitmap('g512', 512);
    a.io([...randomWrites(r, size, 40, 512, 5), { op: 'zero', off: 16 * KiB + 1024, len: 2048 }]);
    return finish('extl2-16k', d, a);
  }],
  ['extl2-64k-over-backing', (d, r) => {
    const size = 2 * MiB; // subclusters of 2 KiB
    const base = Img.qcow2(q(d, 'base.qcow2'), size).io([{ op: 'write', off: 0, len: size, pattern: 1 }]);
    const top = Img.qcow2(q(d, 'top.qcow2'), size, { extendedL2: true, backing: base }).addBitmap('g2k', 2 * KiB).addBitmap('g64k', 64 * KiB);
    top.io([
      ...randomWrites(r, size, 30, 2 * KiB, 3),
      { op: 'zero', off: 512 * KiB + 4 * KiB, len: 6 * KiB },
      { op: 'zero', off: 1 * MiB, len: 64 * KiB },
      { op: 'discard', off: 1536 * KiB, len: 64 * KiB },
    ]);
    return finish('extl2-64k-over-backing', d, top);
  }],
  ['extl2-32k-zero-in-allocated', (d, r) => {
    const size = 1 * MiB; // subclusters of 1 KiB
    const a = Img.qcow2(q(d, 'a.qcow2'), size, { cluster: 32 * KiB, extendedL2: true }).addBitmap('b', 1 * KiB);
    a.io([{ op: 'write', off: 0, len: 256 * KiB, pattern: 3 }, ...randomWrites(r, size, 10, 1 * KiB, 4)]);
    a.io([
      { op: 'zero', off: 33 * KiB, len: 3 * KiB },
      { op: 'zero', off: 100 * KiB, len: 40 * KiB, unmap: true },
      { op: 'discard', off: 192 * KiB, len: 32 * KiB },
    ]);
    return finish('extl2-32k-zero-in-allocated', d, a);
  }],
  ['extl2-2m', (d, r) => {
    const size = 8 * MiB; // subclusters of 64 KiB
    const a = Img.qcow2(q(d, 'a.qcow2'), size, { cluster: 2 * MiB, extendedL2: true }).addBitmap('g64k', 64 * KiB);
    a.io(randomWrites(r, size, 12, 64 * KiB, 3));
    return finish('extl2-2m', d, a);
  }],

  // --- compressed clusters ---------------------------------------------------------------------
  ['compressed-qemu-io-64k', (d, r) => {
    const size = 2 * MiB;
    const cs = 64 * KiB;
    const a = Img.qcow2(q(d, 'a.qcow2'), size).addBitmap('b', 64 * KiB);
    const used = new Set<number>();
    const comp = distinctClusters(r, size / cs, 10, used).map((c) => ({ op: 'compress' as const, off: c * cs, len: cs, pattern: randInt(r, 1, 255) }));
    const plain = distinctClusters(r, size / cs, 5, used).map((c) => ({ op: 'write' as const, off: c * cs + 512, len: 4096, pattern: 2 }));
    a.io([...comp, ...plain]);
    return finish('compressed-qemu-io-64k', d, a);
  }],
  ['compressed-convert-4k', (d, r) => {
    // qemu-img convert -c: every non-zero cluster of the source becomes a compressed cluster.
    const size = 1 * MiB;
    const src = Img.raw(q(d, 'src.raw'), size, 0x44);
    src.io([{ op: 'zero', off: 256 * KiB, len: 256 * KiB }]);
    const basePath = q(d, 'base.qcow2');
    qemuImg('convert', '-q', '-c', '-f', 'raw', '-O', 'qcow2', '-o', 'cluster_size=4096', src.path, basePath);
    fs.rmSync(src.path);
    const base = Img.adopt(basePath, size, 4 * KiB);
    const top = Img.qcow2(q(d, 'top.qcow2'), size, { backing: base }).addBitmap('t', 4 * KiB);
    top.io(randomWrites(r, size, 10, 4 * KiB, 3));
    return finish('compressed-convert-4k', d, top);
  }],
  ['compressed-extl2', (d, r) => {
    const size = 1 * MiB;
    const cs = 32 * KiB;
    const a = Img.qcow2(q(d, 'a.qcow2'), size, { cluster: cs, extendedL2: true }).addBitmap('b', 4 * KiB);
    const used = new Set<number>();
    const comp = distinctClusters(r, size / cs, 8, used).map((c) => ({ op: 'compress' as const, off: c * cs, len: cs }));
    const sub = distinctClusters(r, size / cs, 6, used).map((c) => ({ op: 'write' as const, off: c * cs + 3 * KiB, len: 2 * KiB }));
    a.io([...comp, ...sub]);
    return finish('compressed-extl2', d, a);
  }],
  ['compressed-2m', (d, r) => {
    // 2 MiB clusters: the compressed host offset field is 49 bits wide, spanning both 32-bit halves.
    const size = 8 * MiB;
    const cs = 2 * MiB;
    const a = Img.qcow2(q(d, 'a.qcow2'), size, { cluster: cs }).addBitmap('b', 1 * MiB);
    const [c1, c2] = distinctClusters(r, 4, 2);
    a.io([{ op: 'compress', off: c1 * cs, len: cs }, { op: 'write', off: c2 * cs + 8 * KiB, len: 4 * KiB }]);
    return finish('compressed-2m', d, a);
  }],

  // --- zero clusters and discards --------------------------------------------------------------
  ['zero-over-backing', (d, r) => {
    const size = 2 * MiB;
    const base = Img.qcow2(q(d, 'base.qcow2'), size).io([{ op: 'write', off: 0, len: 1 * MiB, pattern: 5 }, ...randomWrites(r, size, 5, 64 * KiB, 3)]);
    const top = Img.qcow2(q(d, 'top.qcow2'), size, { backing: base }).addBitmap('z', 64 * KiB);
    top.io([
      { op: 'zero', off: 64 * KiB, len: 192 * KiB },
      { op: 'zero', off: 512 * KiB, len: 128 * KiB, unmap: true },
      { op: 'write', off: 900 * KiB, len: 4 * KiB, pattern: 8 },
      { op: 'zero', off: 1536 * KiB, len: 70 * KiB },
    ]);
    return finish('zero-over-backing', d, top);
  }],
  ['zero-alloc-same-layer', (d) => {
    const size = 2 * MiB;
    const a = Img.qcow2(q(d, 'a.qcow2'), size).addBitmap('b', 16 * KiB);
    a.io([{ op: 'write', off: 0, len: 1 * MiB, pattern: 6 }]);
    a.io([
      { op: 'zero', off: 128 * KiB, len: 128 * KiB }, // keeps the host cluster: zero flag + offset
      { op: 'zero', off: 384 * KiB, len: 128 * KiB, unmap: true }, // no backing: becomes unallocated
      { op: 'zero', off: 1536 * KiB, len: 64 * KiB }, // zero where nothing was
    ]);
    return finish('zero-alloc-same-layer', d, a);
  }],
  ['discard-base-and-overlay', (d, r) => {
    const size = 2 * MiB;
    const base = Img.qcow2(q(d, 'base.qcow2'), size).addBitmap('b', 64 * KiB);
    base.io([{ op: 'write', off: 0, len: size, pattern: 4 }]).io([{ op: 'discard', off: 256 * KiB, len: 256 * KiB }, { op: 'discard', off: 1 * MiB + 100, len: 1000 }]);
    const top = Img.qcow2(q(d, 'top.qcow2'), size, { backing: base }).addBitmap('t', 64 * KiB);
    top.io([...randomWrites(r, size, 6, 64 * KiB, 2), { op: 'discard', off: 1 * MiB, len: 256 * KiB }]);
    return finish('discard-base-and-overlay', d, top);
  }],

  // --- raw bases -------------------------------------------------------------------------------
  ['raw-base', (d, r) => {
    const size = 2 * MiB;
    const base = Img.raw(q(d, 'base.raw'), size);
    const top = Img.qcow2(q(d, 'top.qcow2'), size, { backing: base }).addBitmap('b', 64 * KiB);
    top.io([...randomWrites(r, size, 8, 4 * KiB, 10), { op: 'zero', off: 1 * MiB, len: 64 * KiB }]);
    return finish('raw-base', d, top);
  }],
  ['raw-base-3-layers-folders', (d, r) => {
    const size = 2 * MiB;
    const base = Img.raw(q(d, 'base/disk.raw'), size, 0x21);
    const mid = Img.qcow2(q(d, 'mid/disk.qcow2'), size, { backing: base, cluster: 4 * KiB }).addBitmap('m', 4 * KiB);
    mid.io(randomWrites(r, size, 10, 4 * KiB, 4));
    const top = Img.qcow2(q(d, 'top/disk.qcow2'), size, { backing: mid }).addBitmap('t', 512);
    top.io(randomWrites(r, size, 10, 512, 20));
    return finish('raw-base-3-layers-folders', d, top);
  }],
  ['raw-base-smaller', (d, r) => {
    const base = Img.raw(q(d, 'base.raw'), 1 * MiB);
    const top = Img.qcow2(q(d, 'top.qcow2'), 3 * MiB, { backing: base }).addBitmap('b', 64 * KiB);
    top.io(randomWrites(r, 3 * MiB, 6, 64 * KiB, 3));
    return finish('raw-base-smaller', d, top);
  }],

  // --- chains: depth, folders, relative and absolute backing paths -----------------------------
  ['chain2-absolute', (d, r) => {
    const size = 2 * MiB;
    const base = Img.qcow2(q(d, 'base.qcow2'), size).io(randomWrites(r, size, 10, 4 * KiB, 10));
    const top = Img.qcow2(q(d, 'top.qcow2'), size, { backing: base, backingStyle: 'absolute' }).addBitmap('b', 64 * KiB);
    top.io(randomWrites(r, size, 10, 4 * KiB, 10));
    return finish('chain2-absolute', d, top);
  }],
  ['chain3-other-folder-relative', (d, r) => {
    const size = 2 * MiB;
    const base = Img.qcow2(q(d, 'images/base/b.qcow2'), size).addBitmap('cp1', 64 * KiB);
    base.io(randomWrites(r, size, 8, 4 * KiB, 8));
    const mid = Img.qcow2(q(d, 'snapshots/s1/m.qcow2'), size, { backing: base }).addBitmap('cp2', 64 * KiB);
    mid.io(randomWrites(r, size, 8, 4 * KiB, 8));
    const top = Img.qcow2(q(d, 'active/t.qcow2'), size, { backing: mid }).addBitmap('cp3', 64 * KiB);
    top.io(randomWrites(r, size, 8, 4 * KiB, 8));
    return finish('chain3-other-folder-relative', d, top);
  }],
  ['chain5-mixed-clusters', (d, r) => {
    const size = 4 * MiB;
    const l0 = Img.qcow2(q(d, 'l0.qcow2'), size, { cluster: 512 }).io(randomWrites(r, size, 10, 512, 64));
    const l1 = Img.qcow2(q(d, 'sub/l1.qcow2'), size, { cluster: 4 * KiB, backing: l0, backingStyle: 'absolute' }).io(randomWrites(r, size, 10, 4 * KiB, 8));
    const l2 = Img.qcow2(q(d, 'sub/l2.qcow2'), size, { cluster: 2 * MiB, backing: l1 }).io(randomWrites(r, size, 2, 4 * KiB, 8));
    const l3 = Img.qcow2(q(d, 'l3.qcow2'), size, { extendedL2: true, backing: l2 }).io(randomWrites(r, size, 10, 2 * KiB, 4));
    const l4 = Img.qcow2(q(d, 'top/l4.qcow2'), size, { compat: '0.10', backing: l3, backingStyle: 'absolute' }).io(randomWrites(r, size, 10, 64 * KiB, 1));
    return finish('chain5-mixed-clusters', d, l4);
  }],
  ['chain4-bitmaps-every-layer', (d, r) => {
    const size = 2 * MiB;
    let img = Img.qcow2(q(d, 'c0.qcow2'), size).addBitmap('c0', 64 * KiB);
    img.io(randomWrites(r, size, 6, 4 * KiB, 4));
    for (let i = 1; i < 4; i++) {
      const prev = img.disable(`c${i - 1}`);
      img = Img.qcow2(q(d, i % 2 ? `odd/c${i}.qcow2` : `c${i}.qcow2`), size, { backing: prev, backingStyle: i === 2 ? 'absolute' : 'relative' });
      img.addBitmap(`c${i}`, i === 3 ? 512 : 64 * KiB).io(randomWrites(r, size, 6, 4 * KiB, 4));
    }
    return finish('chain4-bitmaps-every-layer', d, img);
  }],
  ['backing-smaller', (d, r) => {
    const base = Img.qcow2(q(d, 'base.qcow2'), 1 * MiB).io([{ op: 'write', off: 0, len: 1 * MiB, pattern: 2 }]);
    const top = Img.qcow2(q(d, 'top.qcow2'), 3 * MiB, { backing: base }).addBitmap('b', 64 * KiB);
    top.io([...randomWrites(r, 3 * MiB, 4, 64 * KiB, 2), { op: 'write', off: 2 * MiB, len: 4 * KiB }]);
    return finish('backing-smaller', d, top);
  }],
  ['middle-smaller', (d, r) => {
    // base 4 MiB full of data, mid 2 MiB, top 4 MiB: past 2 MiB the top reads zeroes, not base data.
    const base = Img.qcow2(q(d, 'base.qcow2'), 4 * MiB).io([{ op: 'write', off: 0, len: 4 * MiB, pattern: 3 }]);
    const mid = Img.qcow2(q(d, 'mid.qcow2'), 2 * MiB, { backing: base }).io(randomWrites(r, 2 * MiB, 4, 64 * KiB, 2));
    const top = Img.qcow2(q(d, 'top.qcow2'), 4 * MiB, { backing: mid }).io([{ op: 'write', off: 3 * MiB, len: 64 * KiB }]);
    return finish('middle-smaller', d, top);
  }],
  ['grow-5-layers', (d, r) => {
    let img = Img.qcow2(q(d, 'g0.qcow2'), 1 * MiB).io(randomWrites(r, 1 * MiB, 4, 64 * KiB, 2));
    for (let i = 1; i < 5; i++) {
      img = Img.qcow2(q(d, `g${i}.qcow2`), (i + 1) * MiB, { backing: img, cluster: i === 2 ? 4 * KiB : 64 * KiB });
      img.io(randomWrites(r, (i + 1) * MiB, 3, 4 * KiB, 4));
    }
    return finish('grow-5-layers', d, img);
  }],
  ['top-smaller', (d, r) => {
    const base = Img.qcow2(q(d, 'base.qcow2'), 4 * MiB).io([{ op: 'write', off: 0, len: 4 * MiB, pattern: 1 }]);
    const top = Img.qcow2(q(d, 'top.qcow2'), 2 * MiB, { backing: base }).addBitmap('b', 64 * KiB);
    top.io(randomWrites(r, 2 * MiB, 5, 4 * KiB, 4));
    return finish('top-smaller', d, top);
  }],

  // --- checkpoint styles -----------------------------------------------------------------------
  ['libvirt-style-same-names', (d, r) => {
    const size = 2 * MiB;
    const base = Img.qcow2(q(d, 'base.qcow2'), size).io(randomWrites(r, size, 4, 64 * KiB, 2));
    base.addBitmap('cp1', 64 * KiB).io(randomWrites(r, size, 4, 4 * KiB, 2));
    base.addBitmap('cp2', 64 * KiB).io(randomWrites(r, size, 4, 4 * KiB, 2));
    const top = Img.qcow2(q(d, 'top.qcow2'), size, { backing: base }).addBitmap('cp1', 64 * KiB).addBitmap('cp2', 64 * KiB).addBitmap('cp3', 64 * KiB);
    top.io(randomWrites(r, size, 6, 4 * KiB, 2));
    return finish('libvirt-style-same-names', d, top);
  }],

  // --- bitmaps left in-use by a killed QEMU ----------------------------------------------------
  ['inuse-qemu-io', async (d, r) => {
    const size = 2 * MiB;
    const a = Img.qcow2(q(d, 'a.qcow2'), size).addBitmap('rec', 64 * KiB).addBitmap('off', 4 * KiB, { disabled: true });
    a.io(randomWrites(r, size, 5, 4 * KiB, 4));
    await a.crashQemuIo([{ op: 'write', off: 1 * MiB, len: 64 * KiB, pattern: 0x66 }]);
    return finish('inuse-qemu-io', d, a);
  }],
  ['inuse-qemu-io-in-backing', async (d, r) => {
    const size = 2 * MiB;
    const base = Img.qcow2(q(d, 'base.qcow2'), size).addBitmap('old', 64 * KiB);
    base.io(randomWrites(r, size, 5, 4 * KiB, 4));
    await base.crashQemuIo([{ op: 'write', off: 0, len: 4 * KiB }]);
    const top = Img.qcow2(q(d, 'top.qcow2'), size, { backing: base }).addBitmap('new', 64 * KiB);
    top.io(randomWrites(r, size, 5, 4 * KiB, 4));
    return finish('inuse-qemu-io-in-backing', d, top);
  }],
  ['inuse-daemon', async (d, r) => {
    const size = 2 * MiB;
    const base = Img.qcow2(q(d, 'base.qcow2'), size).io(randomWrites(r, size, 4, 64 * KiB, 2));
    const a = Img.qcow2(q(d, 'a.qcow2'), size, { backing: base }).addBitmap('rec', 128 * KiB).addBitmap('off', 512, { disabled: true });
    a.io(randomWrites(r, size, 5, 512, 4));
    await a.crashDaemon('added-live');
    return finish('inuse-daemon', d, a, [{ layer: a.path, name: 'added-live' }]);
  }],
];

/** Builds every case in its own folder under `root`. */
export async function generateCases(root: string): Promise<GeneratedCase[]> {
  const out: GeneratedCase[] = [];
  for (const [name, build] of CASES) {
    const dir = path.join(root, name);
    fs.mkdirSync(dir, { recursive: true });
    try {
      out.push(await build(dir, rng(seedOf(name))));
    } catch (e) {
      throw new Error(`building case ${name}: ${(e as Error).message}`, { cause: e });
    }
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Where the fields are, for mutation tests. Independent of the reader: read straight from the qcow2
// spec (QEMU docs/interop/qcow2.txt). Header fields at fixed offsets:
//   0 magic u32 | 4 version u32 | 8 backing_file_offset u64 | 16 backing_file_size u32
//   20 cluster_bits u32 | 24 size u64 | 32 crypt_method u32 | 36 l1_size u32 | 40 l1_table_offset u64
//   48 refcount_table_offset u64 | 56 refcount_table_clusters u32 | 60 nb_snapshots u32
//   64 snapshots_offset u64 | v3: 72 incompatible u64 | 80 compatible u64 | 88 autoclear u64
//   96 refcount_order u32 | 100 header_length u32 | 104 compression_type u8
// Header extensions from header_length (v2: 72): type u32, length u32, data padded to 8; type 0 ends.
// Bitmaps extension 0x23852875: nb_bitmaps u32 @0, reserved u32 @4, directory_size u64 @8,
// directory_offset u64 @16. Directory entry: bitmap_table_offset u64 @0, table_size u32 @8,
// flags u32 @12, type u8 @16, granularity_bits u8 @17, name_size u16 @18, extra_data_size u32 @20,
// then extra data, then the name, the whole entry padded to 8.

export const HDR = {
  magic: 0,
  version: 4,
  backingOffset: 8,
  backingSize: 16,
  clusterBits: 20,
  size: 24,
  cryptMethod: 32,
  l1Size: 36,
  l1Offset: 40,
  incompatible: 72,
  autoclear: 88,
  headerLength: 100,
} as const;

export const EXT_BITMAPS_TYPE = 0x23852875;
export const EXT_BACKING_FORMAT_TYPE = 0xe2792aca;

export interface BitmapEntryLayout {
  /** file offset of the entry */
  at: number;
  tableOffset: number;
  tableSize: number;
  flags: number;
  granularityBits: number;
  nameSize: number;
  extraSize: number;
  name: string;
  /** file offsets of the non-zero table entries' data clusters */
  dataClusters: number[];
}

export interface Qcow2Layout {
  fileSize: number;
  version: number;
  clusterSize: number;
  virtualSize: number;
  headerLength: number;
  backingOffset: number;
  backingSize: number;
  l1Offset: number;
  l1Size: number;
  /** host offsets of the L2 tables in use, in L1 order */
  l2Offsets: number[];
  /** file offset of each extension's type field */
  extensions: { type: number; at: number; length: number }[];
  bitmapsExt: { at: number; count: number; dirSize: number; dirOffset: number } | null;
  bitmaps: BitmapEntryLayout[];
}

const u64be = (b: Buffer, at: number) => Number(b.readBigUInt64BE(at));
const OFFSET_MASK = 0x00fffffffffffe00n;

export function qcow2Layout(b: Buffer): Qcow2Layout {
  const version = b.readUInt32BE(HDR.version);
  const clusterSize = 2 ** b.readUInt32BE(HDR.clusterBits);
  const headerLength = version >= 3 ? b.readUInt32BE(HDR.headerLength) : 72;
  const l1Offset = u64be(b, HDR.l1Offset);
  const l1Size = b.readUInt32BE(HDR.l1Size);
  const l2Offsets: number[] = [];
  for (let i = 0; i < l1Size; i++) {
    const off = Number(b.readBigUInt64BE(l1Offset + i * 8) & OFFSET_MASK);
    if (off) l2Offsets.push(off);
  }
  const extensions: Qcow2Layout['extensions'] = [];
  let bitmapsExt: Qcow2Layout['bitmapsExt'] = null;
  for (let pos = headerLength; pos + 8 <= clusterSize; ) {
    const type = b.readUInt32BE(pos);
    const length = b.readUInt32BE(pos + 4);
    if (type === 0) break;
    extensions.push({ type, at: pos, length });
    if (type === EXT_BITMAPS_TYPE) {
      bitmapsExt = { at: pos + 8, count: b.readUInt32BE(pos + 8), dirSize: u64be(b, pos + 16), dirOffset: u64be(b, pos + 24) };
    }
    pos += 8 + Math.ceil(length / 8) * 8;
  }
  const bitmaps: BitmapEntryLayout[] = [];
  if (bitmapsExt) {
    let at = bitmapsExt.dirOffset;
    for (let i = 0; i < bitmapsExt.count; i++) {
      const tableOffset = u64be(b, at);
      const tableSize = b.readUInt32BE(at + 8);
      const nameSize = b.readUInt16BE(at + 18);
      const extraSize = b.readUInt32BE(at + 20);
      const dataClusters: number[] = [];
      for (let k = 0; k < tableSize; k++) {
        const off = Number(b.readBigUInt64BE(tableOffset + k * 8) & OFFSET_MASK);
        if (off) dataClusters.push(off);
      }
      bitmaps.push({
        at,
        tableOffset,
        tableSize,
        flags: b.readUInt32BE(at + 12),
        granularityBits: b[at + 17],
        nameSize,
        extraSize,
        name: b.toString('utf8', at + 24 + extraSize, at + 24 + extraSize + nameSize),
        dataClusters,
      });
      at += Math.ceil((24 + extraSize + nameSize) / 8) * 8;
    }
  }
  return {
    fileSize: b.length,
    version,
    clusterSize,
    virtualSize: u64be(b, HDR.size),
    headerLength,
    backingOffset: u64be(b, HDR.backingOffset),
    backingSize: b.readUInt32BE(HDR.backingSize),
    l1Offset,
    l1Size,
    l2Offsets,
    extensions,
    bitmapsExt,
    bitmaps,
  };
}
