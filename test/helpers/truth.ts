// The truth a checkpoint must meet: a raw copy of the disk taken when the checkpoint was made, and
// the disk now. Every block that differs between them must be marked by "changes since" it.
import fs from 'node:fs';
import { run } from './qemu.ts';
import { withChain } from '../../electron/core/qcow2/chain.ts';
import { ChainContents, since } from '../../electron/core/checkpoints.ts';
import { toExtents } from '../../electron/core/extents.ts';

/** The disk as the guest sees it through the whole chain, as a raw file. */
export function rawCopy(image: string, to: string): string {
  run('qemu-img', ['convert', '-U', '-O', 'raw', image, to]);
  return to;
}

/** Byte ranges (block-aligned) where two raw disks differ. */
export function differingBlocks(a: string, b: string, block = 65536): { start: number; length: number }[] {
  const x = fs.readFileSync(a);
  const y = fs.readFileSync(b);
  const out: { start: number; length: number }[] = [];
  const n = Math.max(x.length, y.length);
  for (let off = 0; off < n; off += block) {
    const ex = x.subarray(off, off + block);
    const ey = y.subarray(off, off + block);
    if (!ex.equals(ey)) {
      const last = out[out.length - 1];
      if (last && last.start + last.length === off) last.length += block;
      else out.push({ start: off, length: block });
    }
  }
  return out;
}

export interface SinceAnswer {
  state: 'ok' | 'unknown';
  problems: string[];
  extents: { start: number; length: number }[];
}

/** "Changes since" a checkpoint, as the offline reader computes it. */
export function sinceOf(image: string, checkpoint: string): SinceAnswer {
  return withChain(image, (c) => {
    const r = since(new ChainContents(c), checkpoint);
    return { state: r.extents ? 'ok' : 'unknown', problems: r.problems, extents: r.extents ? toExtents(r.extents) : [] };
  });
}

/** The bytes of `need` that `have` does not cover (0 = covered). */
export function missedBytes(need: { start: number; length: number }[], have: { start: number; length: number }[]): number {
  let missed = 0;
  for (const n of need) {
    let pos = n.start;
    const end = n.start + n.length;
    for (const h of have) {
      if (h.start + h.length <= pos) continue;
      if (h.start >= end) break;
      if (h.start > pos) missed += h.start - pos;
      pos = Math.max(pos, h.start + h.length);
      if (pos >= end) break;
    }
    if (pos < end) missed += end - pos;
  }
  return missed;
}
