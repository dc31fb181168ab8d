// Digests of the data each backup wrote, recorded when it is taken and re-read by verify: sha256 of
// every run of host bytes the file's own data clusters occupy (from qemu-img map of the file alone,
// its backing file not opened), so the cost grows with the backup's own data, never with the disk.
// Verify also runs qemu-img check on each file and checks that its backing link is present,
// relative, and names its parent's file.
import fs from 'node:fs';
import path from 'node:path';
import os from 'node:os';
import { Worker } from 'node:worker_threads';
import { spawn, spawnSync } from 'node:child_process';
import { StrataError } from '../errors.ts';
import { openLayer } from '../qcow2/chain.ts';
import type { BackupEntry, DigestRun, Repository } from './repository.ts';
import { mapAlone, tool } from './tools.ts';

/** Digests are taken over pieces of at most this many bytes: verify names the place, and the
 * pieces are hashed on every core (sha256 is the whole cost: ~330 MB/s a core on the test machine). */
const PIECE = 32 << 20;

// The hashing worker, as source text so it survives bundling into dist/cli.cjs.
const WORKER = `
const { parentPort, workerData } = require('node:worker_threads');
const fs = require('node:fs');
const { createHash } = require('node:crypto');
const fd = fs.openSync(workerData.file, 'r');
const buf = Buffer.allocUnsafe(1 << 20);
const out = [];
try {
  for (const [i, offset, length] of workerData.ranges) {
    const h = createHash('sha256');
    let done = 0;
    let short = false;
    while (done < length) {
      const n = fs.readSync(fd, buf, 0, Math.min(buf.length, length - done), offset + done);
      if (n === 0) { short = true; break; }
      h.update(buf.subarray(0, n));
      done += n;
    }
    out.push([i, short ? null : h.digest('hex')]);
  }
} finally {
  fs.closeSync(fd);
}
parentPort.postMessage(out);
`;

let opensslOk: boolean | null = null;
function haveOpenssl(): boolean {
  return (opensslOk ??= spawnSync('openssl', ['version'], { stdio: 'ignore' }).status === 0);
}

/**
 * sha256 of one range through `dd | openssl dgst` (argument arrays, the pipe passed between the two
 * children): OpenSSL's own build hashes ~3× faster than Node's on the test machine. A range cut off
 * by the end of the file hashes what is there, so it no longer matches.
 */
function opensslRange(file: string, offset: number, length: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const dd = spawn('dd', [`if=${file}`, 'iflag=skip_bytes,count_bytes', `skip=${offset}`, `count=${length}`, 'bs=1M', 'status=none'], { stdio: ['ignore', 'pipe', 'ignore'] });
    const h = spawn('openssl', ['dgst', '-sha256', '-r'], { stdio: [dd.stdout, 'pipe', 'ignore'] });
    // openssl has its own copy of the pipe: close ours, or dd's 'close' would wait for it forever.
    dd.stdout.destroy();
    let out = '';
    h.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
    const exit = (c: ReturnType<typeof spawn>) => new Promise<number | null>((res, rej) => {
      c.once('error', rej);
      c.once('close', res);
    });
    Promise.all([exit(dd), exit(h)]).then(
      ([ddCode, code]) => {
        const hex = out.split(' ')[0].trim();
        if (code !== 0 || ddCode !== 0 || !/^[0-9a-f]{64}$/.test(hex)) {
          return reject(new StrataError('E_IO', `${file}: cannot read bytes ${offset}..${offset + length} (dd exit ${ddCode}, openssl exit ${code})`, { file }));
        }
        resolve(hex);
      },
      (e: Error) => reject(new StrataError('E_IO', `${file}: cannot read bytes ${offset}..${offset + length}: ${e.message}`, { file, cause: e })),
    );
  });
}

/** sha256 of each [offset, length) of `file` (null where the file ends first), on every core. */
export async function hashRanges(file: string, ranges: { offset: number; length: number }[], via: 'openssl' | 'node' | 'auto' = 'auto'): Promise<(string | null)[]> {
  const n = Math.max(1, Math.min(os.availableParallelism(), 4, ranges.length));
  if (via === 'openssl' || (via === 'auto' && haveOpenssl())) {
    const out: (string | null)[] = new Array(ranges.length).fill(null);
    let next = 0;
    const lane = async () => {
      for (let i = next++; i < ranges.length; i = next++) out[i] = await opensslRange(file, ranges[i].offset, ranges[i].length);
    };
    await Promise.all(Array.from({ length: n }, lane));
    return out;
  }
  const shares: [number, number, number][][] = Array.from({ length: n }, () => []);
  const load = new Array(n).fill(0);
  ranges.forEach((r, i) => {
    const k = load.indexOf(Math.min(...load));
    shares[k].push([i, r.offset, r.length]);
    load[k] += r.length;
  });
  const out: (string | null)[] = new Array(ranges.length).fill(null);
  await Promise.all(
    shares.map(
      (share) =>
        new Promise<void>((resolve, reject) => {
          const w = new Worker(WORKER, { eval: true, workerData: { file, ranges: share } });
          w.once('message', (res: [number, string | null][]) => {
            for (const [i, h] of res) out[i] = h;
            resolve();
          });
          w.once('error', (e) => reject(new StrataError('E_IO', `${file}: cannot read: ${e.message}`, { file, cause: e })));
        }),
    ),
  );
  return out;
}

export async function recordDigests(file: string): Promise<BackupEntry['digests']> {
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
  const hashes = await hashRanges(file, pieces);
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
  const hashes = await hashRanges(file, b.digests.runs);
  b.digests.runs.forEach((run, i) => {
    checkedBytes += run.length;
    const where = `the data of disk bytes ${run.start}..${run.start + run.length}`;
    if (hashes[i] === null) problems.push(`${file}: ${where} is cut off (file truncated)`);
    else if (hashes[i] !== run.sha256) problems.push(`${file}: ${where} differs from what was written (sha256 mismatch)`);
  });
  return r();
}

export async function verifyRepository(repo: Repository, id?: string): Promise<VerifyResult[]> {
  const list = id ? [repo.find(id)] : repo.manifest.backups;
  const out: VerifyResult[] = [];
  for (const b of list) out.push(await verifyBackup(repo, b));
  return out;
}
