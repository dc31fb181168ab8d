// The first-run demo: the seed's worked example and a larger chain, built with the real qemu-img and
// qemu-io under the data directory (never anywhere else), so a new user sees real checkpoints at once.
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { StrataError } from '../errors.ts';

const exec = promisify(execFile);
const KiB = 1024;
const MiB = 1024 * KiB;
const GiB = 1024 * MiB;

export interface DemoStep {
  label: string;
  cmd: 'qemu-img' | 'qemu-io';
  args: string[];
}

/** A small deterministic generator, so the demo looks the same on every machine. */
function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s * 1664525 + 1013904223) >>> 0;
    return s / 0x100000000;
  };
}

/** The seed thread's example: 8 clusters of 64 KiB, bitmap1 disabled, bitmap2 recording, bitmap3 in the overlay. */
export function seedSteps(dir: string): DemoStep[] {
  const base = path.join(dir, 'base.qcow2');
  const top = path.join(dir, 'top.qcow2');
  return [
    { label: 'create base', cmd: 'qemu-img', args: ['create', '-q', '-f', 'qcow2', base, '512K'] },
    { label: 'write AA', cmd: 'qemu-io', args: ['-c', 'write -P 0x41 0 128k', base] },
    { label: 'checkpoint bitmap1', cmd: 'qemu-img', args: ['bitmap', '--add', base, 'bitmap1'] },
    { label: 'write BB', cmd: 'qemu-io', args: ['-c', 'write -P 0x42 128k 128k', base] },
    { label: 'disable bitmap1', cmd: 'qemu-img', args: ['bitmap', '--disable', base, 'bitmap1'] },
    { label: 'checkpoint bitmap2', cmd: 'qemu-img', args: ['bitmap', '--add', base, 'bitmap2'] },
    { label: 'write CC', cmd: 'qemu-io', args: ['-c', 'write -P 0x43 256k 128k', base] },
    { label: 'create overlay', cmd: 'qemu-img', args: ['create', '-q', '-f', 'qcow2', '-b', 'base.qcow2', '-F', 'qcow2', top] },
    { label: 'checkpoint bitmap3', cmd: 'qemu-img', args: ['bitmap', '--add', top, 'bitmap3'] },
    { label: 'write D-DD', cmd: 'qemu-io', args: ['-c', 'write -P 0x44 192k 64k', '-c', 'write -P 0x44 320k 128k', top] },
  ];
}

function scatteredWrites(r: () => number, size: number, count: number, maxLen: number, pattern: number): string[] {
  const cmds: string[] = [];
  for (let i = 0; i < count; i++) {
    const len = (1 + Math.floor(r() * (maxLen / (64 * KiB)))) * 64 * KiB;
    const off = Math.floor(r() * ((size - len) / (64 * KiB))) * 64 * KiB;
    cmds.push(i % 5 === 4 ? `write -z ${off} ${len}` : `write -P ${pattern} ${off} ${len}`);
  }
  return cmds.flatMap((c) => ['-c', c]);
}

/** Four layers over a 20 GiB disk, libvirt-style checkpoints (every checkpoint keeps recording). */
export function largeSteps(dir: string): DemoStep[] {
  const r = rng(20261122);
  const size = 20 * GiB;
  const names = ['vm-base.qcow2', 'vm-snap1.qcow2', 'vm-snap2.qcow2', 'vm-active.qcow2'];
  const p = (n: string) => path.join(dir, n);
  const steps: DemoStep[] = [
    { label: 'create 20 GiB base', cmd: 'qemu-img', args: ['create', '-q', '-f', 'qcow2', p(names[0]), String(size)] },
    { label: 'install the OS', cmd: 'qemu-io', args: [...scatteredWrites(r, size, 60, 64 * MiB, 0x11), p(names[0])] },
    { label: 'checkpoint mon', cmd: 'qemu-img', args: ['bitmap', '--add', '-g', '64K', p(names[0]), 'mon'] },
    { label: 'monday writes', cmd: 'qemu-io', args: [...scatteredWrites(r, size, 40, 8 * MiB, 0x22), p(names[0])] },
    { label: 'checkpoint tue', cmd: 'qemu-img', args: ['bitmap', '--add', '-g', '64K', p(names[0]), 'tue'] },
    { label: 'tuesday writes', cmd: 'qemu-io', args: [...scatteredWrites(r, size, 40, 8 * MiB, 0x33), p(names[0])] },
  ];
  const carried = ['mon', 'tue'];
  const day = ['wed', 'thu'];
  for (let i = 1; i < names.length; i++) {
    steps.push({ label: `snapshot ${names[i]}`, cmd: 'qemu-img', args: ['create', '-q', '-f', 'qcow2', '-b', names[i - 1], '-F', 'qcow2', p(names[i])] });
    for (const c of carried) steps.push({ label: `carry ${c}`, cmd: 'qemu-img', args: ['bitmap', '--add', '-g', '64K', p(names[i]), c] });
    steps.push({ label: `writes in ${names[i]}`, cmd: 'qemu-io', args: [...scatteredWrites(r, size, 40, 4 * MiB, 0x40 + i), p(names[i])] });
    if (i - 1 < day.length) {
      const c = day[i - 1];
      steps.push({ label: `checkpoint ${c}`, cmd: 'qemu-img', args: ['bitmap', '--add', '-g', '64K', p(names[i]), c] });
      carried.push(c);
      steps.push({ label: `more writes in ${names[i]}`, cmd: 'qemu-io', args: [...scatteredWrites(r, size, 20, 4 * MiB, 0x50 + i), p(names[i])] });
    }
  }
  return steps;
}

export interface DemoOutcome {
  images: string[];
}

export async function buildDemo(dataDir: string, onStep: (label: string, done: number, total: number) => void = () => {}): Promise<DemoOutcome> {
  const root = path.join(dataDir, 'demo');
  const seedDir = path.join(root, 'seed');
  const largeDir = path.join(root, 'large');
  const seedTop = path.join(seedDir, 'top.qcow2');
  const largeTop = path.join(largeDir, 'vm-active.qcow2');
  const plan: { dir: string; top: string; steps: DemoStep[] }[] = [
    { dir: seedDir, top: seedTop, steps: seedSteps(seedDir) },
    { dir: largeDir, top: largeTop, steps: largeSteps(largeDir) },
  ];
  const todo = plan.filter((p) => !fs.existsSync(p.top));
  const total = todo.reduce((n, p) => n + p.steps.length, 0);
  let done = 0;
  for (const p of todo) {
    // Build in a scratch folder and rename at the end: a half-built demo is never mistaken for a whole one.
    const scratch = `${p.dir}.building`;
    fs.rmSync(scratch, { recursive: true, force: true });
    fs.mkdirSync(scratch, { recursive: true });
    const steps = p.dir === seedDir ? seedSteps(scratch) : largeSteps(scratch);
    for (const s of steps) {
      onStep(s.label, done, total);
      try {
        await exec(s.cmd, s.args, { cwd: scratch });
      } catch (e) {
        const err = e as { code?: string; stderr?: string; message: string };
        if (err.code === 'ENOENT') {
          throw new StrataError('E_TOOL', `${s.cmd} is not installed: install QEMU's tools (Debian/Ubuntu: qemu-utils; Fedora: qemu-img)`);
        }
        throw new StrataError('E_TOOL', `${s.cmd} ${s.args.join(' ')} failed: ${(err.stderr || err.message).trim()}`);
      }
      done++;
    }
    fs.rmSync(p.dir, { recursive: true, force: true });
    fs.renameSync(scratch, p.dir);
  }
  onStep('done', total, total);
  return { images: [seedTop, largeTop] };
}
