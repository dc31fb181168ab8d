// Shared pieces of the backup tests: temp folders removed when the test ends, the CLI run from
// source, a disk with a raw copy of it taken at every backup, and file fingerprints.
import { onTestFinished } from 'vitest';
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { qemuImg, run } from '../helpers/qemu.ts';
import { rawCopy } from '../helpers/truth.ts';
import { allocationExtents, withChain } from '../../electron/core/qcow2/chain.ts';
import { totalBytes } from '../../electron/core/extents.ts';
import type { TakeOptions } from '../../electron/core/backup/take.ts';

export const ROOT = path.resolve(import.meta.dirname, '../..');
const TSX = path.join(ROOT, 'node_modules/tsx/dist/loader.mjs');
const ENTRY = path.join(ROOT, 'test/backup/strata-entry.ts');

export function tmp(prefix = 'strata-backup-'): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  onTestFinished(() => {
    for (const f of walk(dir)) fs.chmodSync(f, 0o755);
    fs.rmSync(dir, { recursive: true, force: true });
  });
  return dir;
}

function walk(dir: string): string[] {
  return [dir, ...fs.readdirSync(dir, { withFileTypes: true }).filter((d) => d.isDirectory()).flatMap((d) => walk(path.join(dir, d.name)))];
}

export interface CliResult {
  code: number | null;
  out: string;
  err: string;
}

/** The strata CLI from source, with STRATA_HOME set; `onStart` gets the child (to kill it). */
export function strata(home: string, args: string[], onStart?: (pid: number) => void): Promise<CliResult> {
  return tsScript(ENTRY, home, args, {}, onStart);
}

/** A TypeScript script of the tests run as its own process, with STRATA_HOME set and more of the environment. */
export function tsScript(script: string, home: string, args: string[], env: Record<string, string> = {}, onStart?: (pid: number) => void): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', TSX, script, ...args], { env: { ...process.env, STRATA_HOME: home, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (err += d));
    child.once('error', reject);
    child.once('close', (code) => resolve({ code, out, err }));
    if (child.pid) onStart?.(child.pid);
  });
}

export function sha256(file: string): string {
  return createHash('sha256').update(fs.readFileSync(file)).digest('hex');
}

/** sha256 of every regular file below `dir` (names relative), to prove nothing was written. */
export function fingerprint(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const d of walk(dir)) {
    for (const e of fs.readdirSync(d, { withFileTypes: true })) if (e.isFile()) out[path.relative(dir, path.join(d, e.name))] = sha256(path.join(d, e.name));
  }
  return out;
}

export function bitmapNames(image: string): string[] {
  return withChain(image, (c) => c.layers.flatMap((l) => l.bitmaps.map((b) => `${path.basename(l.path)}:${b.name}${b.inUse ? '(in-use)' : ''}`)));
}

/** Restores `id` and compares it with the raw truth. */
export function sameDisk(restored: string, truth: string): boolean {
  try {
    run('qemu-img', ['compare', '-q', '-f', path.extname(restored) === '.raw' ? 'raw' : 'qcow2', '-F', 'raw', restored, truth]);
    return true;
  } catch {
    return false;
  }
}

export function makeDisk(dir: string, size = '64M'): string {
  const disk = path.join(dir, 'disk.qcow2');
  qemuImg('create', '-q', '-f', 'qcow2', disk, size);
  return disk;
}

/** Bytes allocated in a file's own layer (a backup file: what it holds itself). */
export const ownBytes = (file: string) => withChain(file, (c) => totalBytes(allocationExtents(c.layers[0])));

export const truthOf = (image: string, dir: string, name: string) => rawCopy(image, path.join(dir, `truth-${name}.raw`));

/** Inverts one byte of a file in place (a backup's data damaged under the repository's feet). */
export function flipByteAt(file: string, at: number): void {
  const fd = fs.openSync(file, 'r+');
  try {
    const b = Buffer.alloc(1);
    fs.readSync(fd, b, 0, 1, at);
    b[0] ^= 0xff;
    fs.writeSync(fd, b, 0, 1, at);
  } finally {
    fs.closeSync(fd);
  }
}

/** takeBackup's options for IMAGE into DIR/repo, the data in DIR/home, at the default level unless `extra` says. */
export function opts(dir: string, image: string, extra: Partial<TakeOptions> = {}): TakeOptions {
  return { image, repo: path.join(dir, 'repo'), level: null, since: null, compress: false, dryRun: false, dataDir: path.join(dir, 'home'), ...extra };
}
