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
import { withChain, openLayer } from '../../electron/core/qcow2/chain.ts';
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
export function strata(dir: string, args: string[], env: Record<string, string> = {}): { code: number; stdout: string; stderr: string; json: any } {
  const r = spawnSync(process.execPath, [path.join(root, 'bin/strata.cjs'), ...args], { encoding: 'utf8', env: { ...process.env, STRATA_HOME: path.join(dir, 'home'), ...env }, maxBuffer: 256 << 20 });
  return answer(args, r.status ?? -1, r.stdout, r.stderr);
}

function answer(args: string[], code: number, stdout: string, stderr: string): { code: number; stdout: string; stderr: string; json: any } {
  let json: any = null;
  if (args.includes('--json')) {
    try {
      json = JSON.parse(stdout);
    } catch {
      json = null;
    }
  }
  return { code, stdout, stderr, json };
}

/** strata() without blocking this process (a writer or a QEMU it talks to keeps running meanwhile). */
export function strataAsync(dir: string, args: string[]): Promise<{ code: number; stdout: string; stderr: string; json: any }> {
  const p = spawn(process.execPath, [path.join(root, 'bin/strata.cjs'), ...args], { env: { ...process.env, STRATA_HOME: path.join(dir, 'home') }, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  p.stdout.on('data', (d) => (stdout += d));
  p.stderr.on('data', (d) => (stderr += d));
  return new Promise((resolve) => p.once('close', (code) => resolve(answer(args, code ?? -1, stdout, stderr))));
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

/**
 * Leaves every persistent bitmap of IMG in-use on disk: qemu-io opens it read-write, writes, and is
 * killed, once the file shows the bitmaps in-use (a fixed sleep was too short on a loaded machine:
 * killed while QEMU was still updating the header, the file read as stale instead).
 */
export async function crashWhileOpen(img: string, off: number): Promise<void> {
  const p = spawn('qemu-io', ['-c', `write -P 0x77 ${off} ${G}`, '-c', 'sleep 60000', img], { stdio: 'ignore' });
  const inUse = () => {
    try {
      const l = openLayer(img, 'qcow2');
      try {
        return l.bitmaps.length > 0 && l.bitmaps.every((b) => b.inUse) && !l.bitmapsStale;
      } finally {
        l.file.close();
      }
    } catch {
      return false; // mid-update: read again
    }
  };
  for (const deadline = Date.now() + 20_000; !inUse(); ) {
    if (Date.now() > deadline) throw new Error(`${img}: qemu-io did not mark its bitmaps in-use within 20 s`);
    await new Promise((r) => setTimeout(r, 50));
  }
  // and the write (qemu-io runs its commands in order, the sleep after it): the old fixed wait, now after the open
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

// ------------------------------------------------------------------ chains broken outside Strata

/** The seed's worked example's backing layer: bitmap1 (disabled) and bitmap2 (recording), A B C written. */
export function seedBase(): Scenario {
  const s = newScenario();
  write(s.top, 0x41, 0, 128 * K);
  addBitmap(s.top, 'bitmap1');
  checkpoint(s, 'bitmap1');
  write(s.top, 0x42, 128 * K, 128 * K);
  qemuImg('bitmap', '--disable', s.top, 'bitmap1');
  addBitmap(s.top, 'bitmap2');
  checkpoint(s, 'bitmap2');
  write(s.top, 0x43, 256 * K, 128 * K);
  return s;
}

/** The seed's worked example, with the overlay made by qemu-img create -b (untracked). */
export function seedUntracked(): Scenario {
  const s = seedBase();
  overlay(s, 'top.qcow2');
  write(s.top, 0x44, 192 * K, 64 * K);
  write(s.top, 0x44, 320 * K, 128 * K);
  return s;
}

/** A base of `size` checkpointed as c1 (2 clusters before it, one after), then an overlay made with qemu-img create -b and 3 clusters written into it. */
export function untrackedOverlay(size: number): Scenario {
  const s = newScenario(size);
  write(s.top, 0x41, 0, 2 * G);
  addBitmap(s.top, 'c1');
  checkpoint(s, 'c1');
  write(s.top, 0x42, 4 * G, G);
  overlay(s, 'top.qcow2');
  write(s.top, 0x44, 10 * G, 3 * G);
  return s;
}

/** A base written and checkpointed as c1, then an overlay made with qemu-img create -b. */
export function checkpointThenOverlay(): Scenario {
  const s = newScenario();
  write(s.top, 0x41, 0, G);
  addBitmap(s.top, 'c1');
  checkpoint(s, 'c1');
  overlay(s, 'top.qcow2');
  return s;
}

/** A base holding `before` bytes written when checkpoint c1 was made (its raw copy taken), then one cluster more. */
export function checkpointedBase(before: number): Scenario {
  const s = newScenario();
  write(s.top, 0x41, 0, before);
  addBitmap(s.top, 'c1');
  checkpoint(s, 'c1');
  write(s.top, 0x42, before, G);
  return s;
}

/** A middle layer made with qemu-img create -b between two layers holding c1. */
export function brokenGap(): Scenario {
  const s = checkpointedBase(2 * G);
  overlay(s, 'mid.qcow2');
  write(s.top, 0x43, 3 * G + 512, 8 * K); // not aligned: rounded out to the granularity
  overlay(s, 'top.qcow2');
  addBitmap(s.top, 'c1');
  write(s.top, 0x44, 5 * G, G);
  return s;
}

/** The top's bitmaps left in-use by a qemu-io killed while it had the image open. */
export async function brokenInUseCrashed(): Promise<Scenario> {
  const s = newScenario();
  write(s.top, 0x41, 0, G);
  addBitmap(s.top, 'c1');
  checkpoint(s, 'c1');
  write(s.top, 0x42, G, G);
  overlay(s, 'top.qcow2');
  addBitmap(s.top, 'c1');
  write(s.top, 0x43, 2 * G, G);
  addBitmap(s.top, 'c2');
  checkpoint(s, 'c2');
  await crashWhileOpen(s.top, 4 * G);
  return s;
}

/** The top's only bitmap disabled, then written. */
export function brokenDisabledNewest(): Scenario {
  const s = checkpointThenOverlay();
  addBitmap(s.top, 'c1');
  write(s.top, 0x42, G, G);
  qemuImg('bitmap', '--disable', s.top, 'c1');
  write(s.top, 0x43, 3 * G, G); // missed by c1 in the top
  return s;
}

/** A single-layer image whose only bitmap was disabled, then written. */
export function brokenDisabledBase(): Scenario {
  const s = newScenario();
  addBitmap(s.top, 'c1');
  checkpoint(s, 'c1');
  write(s.top, 0x41, 0, G);
  qemuImg('bitmap', '--disable', s.top, 'c1');
  write(s.top, 0x42, 2 * G, G);
  return s;
}

/** The top's bitmaps left stale (autoclear bit cleared). */
export function brokenStale(): Scenario {
  const s = checkpointThenOverlay();
  addBitmap(s.top, 'c1');
  write(s.top, 0x42, 2 * G, 2 * G);
  makeStale(s.top);
  return s;
}

/** The top written before its bitmap was added. */
export function brokenUncovered(): Scenario {
  const s = checkpointThenOverlay();
  write(s.top, 0x42, 2 * G, G); // before any bitmap in the top
  addBitmap(s.top, 'c2');
  write(s.top, 0x43, 5 * G, G);
  checkpoint(s, 'c2');
  return s;
}


export type CheckpointStyle = 'seed' | 'libvirt';

/** base (c1, c2) under `layers - 1` overlays, each starting a checkpoint of its own (and, libvirt's style, continuing every older one). */
export function layeredChain(layers: 3 | 4, style: CheckpointStyle): Scenario {
  const s = newScenario();
  write(s.top, 0x41, 0, 2 * G);
  addBitmap(s.top, 'c1');
  checkpoint(s, 'c1');
  write(s.top, 0x42, 2 * G, G);
  if (style === 'seed') qemuImg('bitmap', '--disable', s.top, 'c1');
  addBitmap(s.top, 'c2');
  checkpoint(s, 'c2');
  write(s.top, 0x43, 3 * G, G);
  const names = ['c1', 'c2'];
  for (let i = 1; i < layers; i++) {
    overlay(s, i === layers - 1 ? 'top.qcow2' : `mid${i}.qcow2`);
    if (style === 'libvirt') for (const n of names) addBitmap(s.top, n);
    const n = `c${i + 2}`;
    addBitmap(s.top, n);
    checkpoint(s, n);
    names.push(n);
    write(s.top, 0x44 + i, (3 + i) * G + 512, 8 * K); // not aligned: rounded out
    write(s.top, 0x50 + i, i * G, 4 * K); // over data of the layers below
  }
  return s;
}
