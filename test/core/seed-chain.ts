// Builds the seed thread's worked example with the real qemu-img/qemu-io (the same recipe the demo uses).
import { execFileSync } from 'node:child_process';
import path from 'node:path';
import { seedSteps } from '../../electron/core/demo/build-demo.ts';

export function buildSeed(dir: string): { top: string; base: string } {
  for (const s of seedSteps(dir)) execFileSync(s.cmd, s.args, { cwd: dir, stdio: 'ignore' });
  return { top: path.join(dir, 'top.qcow2'), base: path.join(dir, 'base.qcow2') };
}

/** '--11111-' style string for 8 clusters of 64 KiB. */
export function clusters(extents: { start: number; length: number }[], n = 8, size = 65536): string {
  const cells = Array(n).fill('-');
  for (const e of extents) for (let c = e.start / size; c < (e.start + e.length) / size; c++) cells[c] = '1';
  return cells.join('');
}
