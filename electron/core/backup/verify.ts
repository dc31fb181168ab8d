// Digests of the data each backup wrote, recorded when it is taken and re-read by verify, in one of
// two schemes; either way the cost grows with the backup's own data, never with the disk:
//  - "host" (every incremental, differential, live or compressed backup, and prune's merges): sha256
//    of every run of host bytes the file's own data clusters occupy, from qemu-img map of the file
//    alone (its backing file not opened), hashed from the file once it is written;
//  - "guest" (an offline full or copy, uncompressed, of a source without compressed clusters: rules.ts
//    copyPath): sha256 of every run of the disk that holds data, read from
//    the source chain while QEMU copies it (nothing writes an offline source, so these are the bytes
//    the job copies), so no hashing is left for after the job. Verify reads each run through the
//    backup file's own map: it checks the copy against the disk it was taken from, end to end.
// Verify also runs qemu-img check on each file and checks that its backing link is present,
// relative, and names its parent's file.
import fs from 'node:fs';
import path from 'node:path';
import os from 'node:os';
import { Worker } from 'node:worker_threads';
import { createHash } from 'node:crypto';
import { StrataError } from '../errors.ts';
import { openLayer } from '../qcow2/chain.ts';
import type { BackupEntry, DigestRun, Repository } from './repository.ts';
import { mapAlone, tool, type MapEntry } from './tools.ts';

/** Digests are taken over pieces of at most this many bytes: verify names the place, and the
 * pieces are spread over the cores. */
const PIECE = 32 << 20;

/** One stretch of a piece's bytes: a file's [offset, offset + length), or `zero` zero bytes. */
export type Segment = { file: string; offset: number; length: number } | { zero: number };

const segmentLength = (g: Segment) => ('zero' in g ? g.zero : g.length);

/**
 * sha256 of the bytes of `segs` in turn (null where a file ends first), or the segment that could
 * not be read and why. It runs on this thread and, as its source text, in the hashing threads, so
 * it uses nothing but its arguments (open files are kept in `fds` for the caller to close).
 */
function hashSegments(segs: Segment[], fds: Map<string, number>, buf: Buffer, zeros: Buffer, io: { fs: typeof fs; createHash: typeof createHash }): { hex: string | null } | { seg: number; message: string } {
  const h = io.createHash('sha256');
  for (let s = 0; s < segs.length; s++) {
    const g = segs[s];
    try {
      if ('zero' in g) {
        for (let done = 0; done < g.zero; done += zeros.length) h.update(zeros.subarray(0, Math.min(zeros.length, g.zero - done)));
        continue;
      }
      let fd = fds.get(g.file);
      if (fd === undefined) fds.set(g.file, (fd = io.fs.openSync(g.file, 'r')));
      for (let done = 0; done < g.length; ) {
        const n = io.fs.readSync(fd, buf, 0, Math.min(buf.length, g.length - done), g.offset + done);
        if (n === 0) return { hex: null };
        h.update(buf.subarray(0, n));
        done += n;
      }
    } catch (e) {
      return { seg: s, message: String((e as Error)?.message ?? e) };
    }
  }
  return { hex: h.digest('hex') };
}

// The hashing thread, as source text so it survives bundling into dist/cli.cjs: it waits for pieces
// ({ seq, i, segs }) and answers each with hashSegments' result. A pool for work in the background
// (a backup's digests while QEMU copies) lowers its threads' CPU priority: on Linux a nice value
// belongs to one thread, so QEMU's job is never the one that waits for a core.
const WORKER = `
const { parentPort, workerData } = require('node:worker_threads');
const fs = require('node:fs');
const { createHash } = require('node:crypto');
if (workerData && workerData.background) {
  try { require('node:os').setPriority(19); } catch {}
}
const buf = Buffer.allocUnsafe(1 << 20);
const zeros = Buffer.alloc(1 << 20);
${hashSegments.toString()}
parentPort.on('message', ({ seq, i, segs }) => {
  const fds = new Map();
  try {
    parentPort.postMessage({ seq, i, ...hashSegments(segs, fds, buf, zeros, { fs, createHash }) });
  } finally {
    for (const fd of fds.values()) fs.closeSync(fd);
  }
});
`;

function readError(segs: Segment[], at: number | undefined, message: string): StrataError {
  const g = segs[at ?? 0];
  if (!g || 'zero' in g) return new StrataError('E_IO', `cannot hash: ${message}`);
  return new StrataError('E_IO', `${g.file}: cannot read bytes ${g.offset}..${g.offset + g.length}: ${message}`, { file: g.file });
}

/**
 * sha256 of pieces of files on Node's own crypto, one worker thread a core (at most 4), each pulling
 * the next piece when it is done (so a slow core never holds the others back). A pool can be started
 * before the data is complete (a backup starts it when its job starts, so the threads are up when
 * the data is): nothing is read until a call. Node's sha256 is OpenSSL's in-process; on the test
 * machine it hashes 1 GiB in 0.36 s on 2 cores, where `dd | openssl dgst` lanes took 0.54 s (the pipe
 * copies every byte twice more).
 */
export class HashPool {
  private readonly workers: Worker[];
  private closed = false;
  /** a thread died (its 'error'): it would never answer, so no later call is started */
  private broken: Error | null = null;
  /** each call's number: a late answer to a failed call is never taken for the next one's */
  private seq = 0;

  /** `background`: the threads run at the lowest CPU priority (work beside a QEMU job). */
  constructor(size = Math.max(1, Math.min(os.availableParallelism(), 4)), opts: { background?: boolean } = {}) {
    this.workers = Array.from({ length: size }, () => {
      const w = new Worker(WORKER, { eval: true, workerData: { background: opts.background === true } });
      // between calls too: a thread that died marks the pool, it never crashes the process
      w.on('error', (e) => (this.broken ??= new StrataError('E_IO', `digest thread failed: ${e.message}`, { cause: e })));
      w.unref();
      return w;
    });
  }

  /** sha256 of each [offset, length) of `file`, in order (null where the file ends first). */
  hash(file: string, ranges: { offset: number; length: number }[]): Promise<(string | null)[]> {
    return this.hashPieces(ranges.map((r) => [{ file, offset: r.offset, length: r.length }]));
  }

  /** sha256 of each piece's segments, in order (null where a file ends first). */
  hashPieces(pieces: Segment[][]): Promise<(string | null)[]> {
    if (this.closed) throw new Error('HashPool: closed');
    if (this.broken) throw this.broken;
    const out: (string | null)[] = new Array(pieces.length).fill(null);
    if (!pieces.length) return Promise.resolve(out);
    const seq = ++this.seq;
    // Idle threads never keep the process alive; a call in progress does.
    for (const w of this.workers) w.ref();
    return new Promise((resolve, reject) => {
      let next = 0;
      let pending = 0;
      let failed = false;
      const listeners: [Worker, (m: any) => void, (e: Error) => void][] = [];
      const finish = (e?: Error) => {
        for (const [w, onMessage, onError] of listeners) {
          w.off('message', onMessage);
          w.off('error', onError);
          w.unref();
        }
        if (e) reject(e);
        else resolve(out);
      };
      const give = (w: Worker) => {
        if (next >= pieces.length) return;
        const i = next++;
        pending++;
        w.postMessage({ seq, i, segs: pieces[i] });
      };
      for (const w of this.workers) {
        const onMessage = (m: { seq: number; i: number; hex?: string | null; seg?: number; message?: string }) => {
          if (failed || m.seq !== seq) return;
          pending--;
          if (m.message !== undefined) {
            failed = true;
            return finish(readError(pieces[m.i], m.seg, m.message));
          }
          out[m.i] = m.hex ?? null;
          give(w);
          if (pending === 0 && next >= pieces.length) finish();
        };
        const onError = (e: Error) => {
          const err = new StrataError('E_IO', `digest thread failed: ${e.message}`, { cause: e });
          this.broken ??= err;
          if (failed) return;
          failed = true;
          finish(err);
        };
        w.on('message', onMessage);
        w.on('error', onError);
        listeners.push([w, onMessage, onError]);
      }
      for (const w of this.workers) give(w);
    });
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await Promise.all(this.workers.map((w) => w.terminate()));
  }
}

/**
 * sha256 of each [offset, length) of `file` (null where the file ends first), on every core; up to
 * one piece in all (an incremental's few MiB) on this thread, which costs less than starting one.
 */
export function hashRanges(file: string, ranges: { offset: number; length: number }[], pool?: HashPool): Promise<(string | null)[]> {
  return hashPieces(ranges.map((r) => [{ file, offset: r.offset, length: r.length }]), pool);
}

/** sha256 of each piece (null where a file ends first): on `pool`, on threads of its own, or here when small. */
export async function hashPieces(pieces: Segment[][], pool?: HashPool): Promise<(string | null)[]> {
  const bytes = pieces.reduce((n, p) => n + p.reduce((m, g) => m + segmentLength(g), 0), 0);
  if (!pool && bytes <= PIECE) return hashHere(pieces);
  const own = pool ?? new HashPool(Math.max(1, Math.min(os.availableParallelism(), 4, pieces.length)));
  try {
    return await own.hashPieces(pieces);
  } finally {
    if (!pool) await own.close();
  }
}

/** Is hashing `bytes` worth threads of its own (more than one piece)? */
export const worthAPool = (bytes: number) => bytes > PIECE;

function hashHere(pieces: Segment[][]): (string | null)[] {
  const fds = new Map<string, number>();
  const buf = Buffer.allocUnsafe(1 << 20);
  const zeros = Buffer.alloc(1 << 20);
  try {
    return pieces.map((segs) => {
      const r = hashSegments(segs, fds, buf, zeros, { fs, createHash });
      if ('seg' in r) throw readError(segs, r.seg, r.message);
      return r.hex;
    });
  } finally {
    for (const fd of fds.values()) fs.closeSync(fd);
  }
}

/**
 * The digest pieces of a guest-addressed ("guest" scheme) backup: runs of the disk that hold data,
 * each cut at PIECE bytes, as the segments of `map` (a qemu-img map of a chain or of one file alone)
 * they read from. `fileOf(depth)` names the file of each layer the map reaches. Null when some data
 * has no fixed place in a file (compressed clusters): those cannot be read raw.
 */
export function guestPieces(map: MapEntry[], fileOf: (depth: number) => string | null): { start: number; length: number; segs: Segment[] }[] | null {
  const pieces: { start: number; length: number; segs: Segment[] }[] = [];
  let cur: { start: number; length: number; segs: Segment[] } | null = null;
  for (const e of map) {
    if (!e.data) {
      cur = null;
      continue;
    }
    const file = e.zero ? null : fileOf(e.depth);
    if (!e.zero && (e.offset === undefined || file === null)) return null;
    for (let d = 0; d < e.length; ) {
      if (!cur || cur.start + cur.length !== e.start + d || cur.length >= PIECE) {
        cur = { start: e.start + d, length: 0, segs: [] };
        pieces.push(cur);
      }
      const n = Math.min(e.length - d, PIECE - cur.length);
      cur.segs.push(e.zero ? { zero: n } : { file: file!, offset: e.offset! + d, length: n });
      cur.length += n;
      d += n;
    }
  }
  return pieces;
}

/** The segments that [start, start + length) of a file alone reads from (its own `map`): data where
 * it holds data, zeros elsewhere; null where the data is compressed (no fixed place to read). */
function segmentsAlone(file: string, map: MapEntry[], start: number, length: number): Segment[] | null {
  const segs: Segment[] = [];
  const end = start + length;
  let at = start;
  // the map is sorted and gapless: the first entry that ends after `start`, by bisection (a full of
  // a large disk has tens of thousands of runs and as many map entries)
  let lo = 0;
  for (let hi = map.length; lo < hi; ) {
    const mid = (lo + hi) >>> 1;
    if (map[mid].start + map[mid].length <= start) lo = mid + 1;
    else hi = mid;
  }
  for (let i = lo; i < map.length && map[i].start < end; i++) {
    const e = map[i];
    const lo = Math.max(at, e.start);
    const hi = Math.min(end, e.start + e.length);
    if (hi <= lo) continue;
    if (lo > at) segs.push({ zero: lo - at });
    if (e.data && !e.zero) {
      if (e.offset === undefined) return null;
      segs.push({ file, offset: e.offset + (lo - e.start), length: hi - lo });
    } else segs.push({ zero: hi - lo });
    at = hi;
  }
  if (at < end) segs.push({ zero: end - at });
  return segs;
}

/** The digests of a backup file's own data (`pool`: hash on these already started threads). */
export async function recordDigests(file: string, pool?: HashPool): Promise<BackupEntry['digests']> {
  const map = await mapAlone(file);
  const pieces: { start: number; length: number; offset: number }[] = [];
  const unverifiable: { start: number; length: number }[] = [];
  for (const e of map) {
    if (e.depth !== 0 || !e.data) continue;
    // Compressed clusters have no fixed host offset in the map: qemu-img check covers them.
    if (e.offset === undefined) {
      unverifiable.push({ start: e.start, length: e.length });
      continue;
    }
    for (let d = 0; d < e.length; d += PIECE) pieces.push({ start: e.start + d, length: Math.min(PIECE, e.length - d), offset: e.offset + d });
  }
  const hashes = await hashRanges(file, pieces, pool);
  const runs: DigestRun[] = pieces.map((p, i) => {
    if (hashes[i] === null) throw new StrataError('E_CORRUPT', `${file}: data at ${p.offset} lies past the end of the file`, { file });
    return { ...p, sha256: hashes[i]! };
  });
  return { algorithm: 'sha256', fileBytes: fs.statSync(file).size, runs, unverifiable };
}

export interface VerifyResult {
  id: string;
  file: string;
  ok: boolean;
  problems: string[];
  checkedBytes: number;
}

export async function verifyBackup(repo: Repository, b: BackupEntry): Promise<VerifyResult> {
  const file = repo.fileOf(b);
  const problems: string[] = [];
  let checkedBytes = 0;
  const r = (): VerifyResult => ({ id: b.id, file, ok: problems.length === 0, problems, checkedBytes });
  if (!fs.existsSync(file)) {
    problems.push(`${file} is missing`);
    return r();
  }
  const size = fs.statSync(file).size;
  if (size < b.digests.fileBytes) problems.push(`${file} is truncated: ${size} bytes, ${b.digests.fileBytes} when written`);
  // The backing link, read from the header with Strata's own reader.
  try {
    const layer = openLayer(file, 'qcow2');
    try {
      const parent = b.parent ? repo.find(b.parent) : null;
      if (!parent && layer.backingFile !== null) problems.push(`${file}: a ${b.level} backup must be standalone, but its header names backing file '${layer.backingFile}'`);
      if (parent) {
        if (layer.backingFile === null) problems.push(`${file}: its backing link to ${parent.file} is missing`);
        else if (path.isAbsolute(layer.backingFile)) problems.push(`${file}: backing link '${layer.backingFile}' is absolute (the repository could not be moved)`);
        else if (layer.backingFile !== parent.file) problems.push(`${file}: backing link '${layer.backingFile}' should name ${parent.file}`);
        else if (!fs.existsSync(repo.fileOf(parent))) problems.push(`${file}: its backing file ${parent.file} is missing`);
      }
    } finally {
      layer.file.close();
    }
  } catch (e) {
    problems.push(`${file}: ${(e as Error).message}`);
    return r();
  }
  try {
    await tool('qemu-img', ['check', '-U', '-q', '-f', 'qcow2', file], file);
  } catch (e) {
    problems.push(`qemu-img check: ${(e as Error).message}`);
  }
  const runs = b.digests.runs;
  let pieces: (Segment[] | null)[];
  if (b.digests.scheme === 'guest') {
    // Recorded from the disk as QEMU copied it: each run is what the file alone must read over
    // those disk bytes, found through its own map (data from its clusters, zeros elsewhere).
    let map: MapEntry[];
    try {
      map = await mapAlone(file);
    } catch (e) {
      problems.push(`${file}: ${(e as Error).message}`);
      return r();
    }
    pieces = runs.map((run) => segmentsAlone(file, map, run.start, run.length));
  } else pieces = runs.map((run) => [{ file, offset: run.offset!, length: run.length }]);
  const readable = pieces.filter((p): p is Segment[] => p !== null);
  const hashed = await hashPieces(readable);
  let k = 0;
  runs.forEach((run, i) => {
    const where = `the data of disk bytes ${run.start}..${run.start + run.length}`;
    if (pieces[i] === null) return problems.push(`${file}: ${where} is stored compressed, where the backup wrote it plain`);
    checkedBytes += run.length;
    const hex = hashed[k++];
    if (hex === null) problems.push(`${file}: ${where} is cut off (file truncated)`);
    else if (hex !== run.sha256) problems.push(`${file}: ${where} differs from what was written (sha256 mismatch)`);
  });
  return r();
}

export async function verifyRepository(repo: Repository, id?: string): Promise<VerifyResult[]> {
  const list = id ? [repo.find(id)] : repo.manifest.backups;
  const out: VerifyResult[] = [];
  for (const b of list) out.push(await verifyBackup(repo, b));
  return out;
}
