// Small helpers for the benchmark: a seeded PRNG, statistics, timed process runs, table printing.
import { spawnSync, type SpawnSyncOptions } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';

export const ROOT = path.resolve(import.meta.dirname, '..', '..');
export const CACHE = path.join(ROOT, '.bench-cache');

/** mulberry32: deterministic, so a fixture rebuilt from the same parameters is byte-identical. */
export function prng(seed: number): () => number {
  let s = seed | 0;
  return () => {
    s = (s + 0x6d2b79f5) | 0;
    let t = Math.imul(s ^ (s >>> 15), 1 | s);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export function median(xs: number[]): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

export const round = (x: number, d = 2) => Math.round(x * 10 ** d) / 10 ** d;

export function fmtMs(ms: number): string {
  if (!Number.isFinite(ms)) return '-';
  if (ms >= 10_000) return `${(ms / 1000).toFixed(1)} s`;
  if (ms >= 1000) return `${(ms / 1000).toFixed(2)} s`;
  if (ms >= 100) return `${ms.toFixed(0)} ms`;
  if (ms >= 10) return `${ms.toFixed(1)} ms`;
  return `${ms.toFixed(2)} ms`;
}

export interface Timed {
  ms: number;
  stdout: Buffer;
  stderr: string;
}

/**
 * Runs a command to completion and times it from just before the spawn to its exit (output fully read).
 * Output is kept as a Buffer so decoding it does not count against the child. Non-zero exit throws.
 */
export function timedRun(cmd: string, args: string[], opts: SpawnSyncOptions = {}): Timed {
  const t0 = performance.now();
  const r = spawnSync(cmd, args, { maxBuffer: 2 ** 31 - 1, stdio: ['ignore', 'pipe', 'pipe'], ...opts, encoding: 'buffer' });
  const ms = performance.now() - t0;
  if (r.error) throw new Error(`${cmd} ${args.join(' ')}: ${r.error.message}`);
  const stderr = r.stderr ? r.stderr.toString('utf8') : '';
  if (r.status !== 0) {
    throw new Error(`${cmd} ${args.join(' ')} exited with ${r.status ?? r.signal}: ${stderr.trim() || (r.stdout ? r.stdout.toString('utf8').slice(0, 2000) : '')}`);
  }
  return { ms, stdout: r.stdout as Buffer, stderr };
}

/** stdout of a command as text; throws with its stderr on failure. */
export function run(cmd: string, args: string[], opts: SpawnSyncOptions = {}): string {
  return timedRun(cmd, args, opts).stdout.toString('utf8');
}

export function toolVersion(cmd: string): string {
  return run(cmd, ['--version']).split('\n')[0].trim();
}

/** Process state letter from /proc, or null when the process is gone. A zombie counts as gone. */
function procState(pid: number): string | null {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
  } catch {
    return null;
  }
}

export function sleepMs(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

/** Waits for a process we started (by pid) to end; SIGTERM after `graceMs`, SIGKILL after twice that. */
export function waitGone(pid: number, graceMs = 5000): 'exited' | 'terminated' | 'killed' {
  const t0 = performance.now();
  let sent: 'terminated' | 'killed' | null = null;
  for (;;) {
    const st = procState(pid);
    if (st === null || st === 'Z' || st === 'X') return sent ?? 'exited';
    const waited = performance.now() - t0;
    if (waited > 2 * graceMs && sent !== 'killed') {
      process.kill(pid, 'SIGKILL');
      sent = 'killed';
    } else if (waited > graceMs && sent === null) {
      process.kill(pid, 'SIGTERM');
      sent = 'terminated';
    }
    sleepMs(2);
  }
}

/** Left-aligned text table with a header row. */
export function table(head: string[], rows: string[][]): string {
  const w = head.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (r: string[]) => r.map((c, i) => (c ?? '').padEnd(w[i])).join('  ').trimEnd();
  return [line(head), w.map((n) => '-'.repeat(n)).join('  '), ...rows.map(line)].join('\n');
}

export function readVmStatus(): { vmRssKb: number; vmHwmKb: number } {
  const s = fs.readFileSync('/proc/self/status', 'utf8');
  const get = (k: string) => Number(/^(\w+):\s+(\d+)/m.exec(s.split('\n').find((l) => l.startsWith(k + ':')) ?? '')?.[2] ?? NaN);
  return { vmRssKb: get('VmRSS'), vmHwmKb: get('VmHWM') };
}
