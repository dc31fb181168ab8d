// Shared by the live CLI tests: the bundled `strata` run as a user runs it (asynchronously, so a
// test can keep its daemons' output flowing), and short QMP sessions that end before the CLI needs
// the monitor (QEMU serves one client per monitor).
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { QmpClient } from '../../electron/core/qmp/client.ts';

export const ROOT = path.resolve(import.meta.dirname, '../..');
const BIN = path.join(ROOT, 'bin/strata.cjs');

export interface CliResult {
  code: number | null;
  out: string;
  err: string;
  ms: number;
}

/** `node bin/strata.cjs ARGS` with STRATA_HOME set (never the user's own data dir). */
export function strata(home: string, ...args: string[]): Promise<CliResult> {
  if (!fs.existsSync(path.join(ROOT, 'dist/cli.cjs'))) throw new Error('dist/cli.cjs is missing: run `node scripts/build.mjs cli` first');
  const t0 = performance.now();
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [BIN, ...args], { env: { ...process.env, STRATA_HOME: home }, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (err += d));
    child.once('error', reject);
    child.once('close', (code) => resolve({ code, out, err, ms: performance.now() - t0 }));
  });
}

/** One QMP session, closed before returning (so the CLI can have the monitor next). */
export async function withQmp<T>(socket: string, fn: (q: QmpClient) => Promise<T>): Promise<T> {
  const q = await QmpClient.connect(socket);
  try {
    return await fn(q);
  } finally {
    await q.close();
  }
}

export interface Leftovers {
  exports: unknown[];
  /** bitmap names per node */
  bitmaps: Record<string, string[]>;
  busy: string[];
  nbdServerRunning: boolean;
}

/** What a live read could leave behind, seen over QMP. Probing the NBD server stops none: see below. */
export async function leftovers(socket: string): Promise<Leftovers> {
  return withQmp(socket, async (q) => {
    const exports = await q.execute<unknown[]>('query-block-exports');
    const nodes = await q.execute<any[]>('query-named-block-nodes', { flat: true });
    const bitmaps: Record<string, string[]> = {};
    const busy: string[] = [];
    for (const n of nodes) {
      const list = (n['dirty-bitmaps'] ?? []) as any[];
      if (list.length) bitmaps[n['node-name']] = list.map((b) => b.name).sort();
      for (const b of list) if (b.busy) busy.push(`${n['node-name']}/${b.name}`);
    }
    // QEMU 7.2 has no query for the NBD server; nbd-server-stop answers "not running" when there
    // is none (and would stop one that runs, which then is a failure of the test anyway).
    let nbdServerRunning = true;
    try {
      await q.execute('nbd-server-stop');
    } catch (e) {
      if (/not running/.test((e as Error).message)) nbdServerRunning = false;
      else throw e;
    }
    return { exports, bitmaps, busy, nbdServerRunning };
  });
}

/** A deterministic PRNG (mulberry32). */
export function prng(seed: number): () => number {
  let s = seed | 0;
  return () => {
    s = (s + 0x6d2b79f5) | 0;
    let t = Math.imul(s ^ (s >>> 15), 1 | s);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** `n` qemu-io writes at 512-aligned offsets (not granule-aligned) of 512 B..256 KiB, within `size`. */
export function scatteredWrites(n: number, size: number, seed: number, pattern: number): string[] {
  const rnd = prng(seed);
  const out: string[] = [];
  for (let i = 0; i < n; i++) {
    const len = (1 + Math.floor(rnd() * 512)) * 512;
    const off = Math.floor(rnd() * ((size - len) / 512)) * 512;
    out.push(`write -P ${pattern} ${off} ${len}`);
  }
  return out;
}

export async function waitExit(child: import('node:child_process').ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  await new Promise<void>((r) => child.once('exit', () => r()));
}
