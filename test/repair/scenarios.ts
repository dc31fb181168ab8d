// Chains broken outside Strata, built with qemu-img/qemu-io, with a raw copy of the disk taken when
// each checkpoint was made: the truth every repaired checkpoint must meet.
import { spawnSync, spawn } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { onTestFinished, expect } from 'vitest';
import { qemuImg, qemuIo, run } from '../helpers/qemu.ts';
import { rawCopy, differingBlocks, sinceOf, missedBytes } from '../helpers/truth.ts';
import { withChain } from '../../electron/core/qcow2/chain.ts';
import { checkpointOrder } from '../../electron/core/checkpoints.ts';

export const K = 1024;
export const G = 64 * K;
const root = path.resolve(import.meta.dirname, '../..');

export interface Scenario {
  dir: string;
  top: string;
  /** checkpoint name -> raw copy of the disk when it was made */
  copies: Map<string, string>;
  layers: string[];
}

export function tmp(prefix = 'strata-repair-'): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  onTestFinished(() => fs.rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** Runs the built CLI with its data in DIR/home. */
export function strata(dir: string, args: string[]): { code: number; stdout: string; stderr: string; json: any } {
  const r = spawnSync(process.execPath, [path.join(root, 'bin/strata.cjs'), ...args], { encoding: 'utf8', env: { ...process.env, STRATA_HOME: path.join(dir, 'home') }, maxBuffer: 256 << 20 });
  let json: any = null;
  if (args.includes('--json')) {
    try {
      json = JSON.parse(r.stdout);
    } catch {
      json = null;
    }
  }
  return { code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr, json };
}

export function sums(files: string[]): Record<string, string> {
  return Object.fromEntries(files.map((f) => [f, crypto.createHash('sha256').update(fs.readFileSync(f)).digest('hex')]));
}

let copyN = 0;
export function checkpoint(s: Scenario, name: string): void {
  s.copies.set(name, rawCopy(s.top, path.join(s.dir, `copy-${name}-${++copyN}.raw`)));
}

export function newScenario(size = 8 * G): Scenario {
  const dir = tmp();
  const top = path.join(dir, 'base.qcow2');
  qemuImg('create', '-q', '-f', 'qcow2', top, String(size));
  return { dir, top, copies: new Map(), layers: [top] };
}

export function overlay(s: Scenario, name: string): string {
  const p = path.join(s.dir, name);
  qemuImg('create', '-q', '-f', 'qcow2', '-b', path.basename(s.top), '-F', 'qcow2', p);
  s.top = p;
  s.layers.unshift(p);
  return p;
}

export const write = (img: string, pattern: number, off: number, len: number) => qemuIo(img, [`write -P ${pattern} ${off} ${len}`]);
export const addBitmap = (img: string, name: string, ...extra: string[]) => qemuImg('bitmap', '--add', ...extra, img, name);

/** Leaves every persistent bitmap of IMG in-use on disk: qemu-io opens it read-write, writes, and is killed. */
export async function crashWhileOpen(img: string, off: number): Promise<void> {
  const p = spawn('qemu-io', ['-c', `write -P 0x77 ${off} ${G}`, '-c', 'sleep 60000', img], { stdio: 'ignore' });
  await new Promise((r) => setTimeout(r, 700));
  p.kill('SIGKILL');
  await new Promise((r) => p.once('exit', r));
}

/** Clears the header's autoclear bit 0 (what a program without bitmap support leaves). */
export function makeStale(img: string): void {
  const fd = fs.openSync(img, 'r+');
  const b = Buffer.alloc(8);
  fs.readSync(fd, b, 0, 8, 88);
  b[7] &= ~1;
  fs.writeSync(fd, b, 0, 8, 88);
  fs.closeSync(fd);
}

export interface TruthReport {
  name: string;
  state: 'ok' | 'unknown';
  differing: number;
  marked: number;
  missed: number;
}

/**
 * For every checkpoint with a raw copy: if Strata calls it ok, "changes since" must cover every block
 * that differs between the copy and the disk now, and not be grossly larger.
 */
export function assertTruth(s: Scenario, opts: { slackBytes?: number } = {}): TruthReport[] {
  const now = rawCopy(s.top, path.join(s.dir, `now-${++copyN}.raw`));
  const names = withChain(s.top, (c) => checkpointOrder(c));
  const out: TruthReport[] = [];
  for (const [name, copy] of s.copies) {
    if (!names.includes(name)) continue;
    const a = sinceOf(s.top, name);
    const diff = differingBlocks(copy, now, G);
    const differing = diff.reduce((n, e) => n + e.length, 0);
    const marked = a.extents.reduce((n, e) => n + e.length, 0);
    const missed = a.state === 'ok' ? missedBytes(diff, a.extents) : 0;
    out.push({ name, state: a.state, differing, marked, missed });
    if (a.state === 'ok') {
      expect(missed, `checkpoint ${name}: changes since it miss ${missed} changed bytes`).toBe(0);
      expect(marked, `checkpoint ${name}: ${marked} bytes marked for ${differing} differing`).toBeLessThanOrEqual(differing * 2 + (opts.slackBytes ?? 4 * G));
    }
  }
  fs.rmSync(now);
  return out;
}

export function qemuCheckAll(s: Scenario): void {
  for (const l of s.layers) if (fs.existsSync(l)) run('qemu-img', ['check', '-q', l]);
}
