// Locating a missing backing file: the user names a file, Strata checks that it can be the one the
// chain lost (it exists, is an image of the format the layer names, with the layer's virtual size,
// and is not already in the chain), and shows the one write that would point the layer at it:
// `qemu-img rebase -u -b NEW -F FMT LAYER` (header only, no data read or written). Only a request
// that carries the user's confirmation runs it, journaled as a repair plan (so the history lists it),
// and never while a process holds the image.
import fs from 'node:fs';
import { openLayer } from '../qcow2/chain.ts';
import { imageLockState } from '../daemon/image-lock.ts';
import { StrataError } from '../errors.ts';
import type { Db } from '../store/db.ts';
import { backingMismatch, openForRepair } from './facts.ts';
import { lookAndMaybeApply } from './report.ts';

export interface BackingCheck {
  image: string;
  /** the backing file the chain names and cannot find */
  missing: { file: string; expectedAt: string; referencedBy: string };
  /** the file the user pointed at (absolute) */
  candidate: string;
  /** what the candidate is, when it could be read as an image */
  format: 'qcow2' | 'raw' | null;
  virtualSize: number | null;
  /** why it cannot be the missing file; empty when it is plausible */
  problems: string[];
  /** a process (a running QEMU) holds the image or the layer to change: no rebase now */
  held: boolean;
  /** the exact command a confirmed rebase runs (an argument array); null when it would be refused */
  command: string[] | null;
}

export interface RebaseResult extends BackingCheck {
  applied: true;
  /** the journaled plan's id (strata history --plans) */
  plan: number;
}

interface Ctx {
  db: Db;
  runtimeDir: string;
}

/** Reads only: the missing file, what the candidate is and whether it fits, and the command. */
export async function checkBackingCandidate(image: string, candidate: string, ctx: Ctx): Promise<BackingCheck> {
  if (!fs.existsSync(image)) throw new StrataError('E_NOT_FOUND', `${image}: no such file`, { file: image });
  const opened = openForRepair(image);
  const layers = opened.chain.layers.map((l) => l.path);
  const m = opened.missing;
  const referrer = m ? opened.chain.layers.find((l) => l.path === m.layer)! : null;
  const expect = referrer ? { format: referrer.backingFormat, virtualSize: referrer.virtualSize, backingFile: referrer.backingFile! } : null;
  opened.chain.close();
  if (!m || !expect) throw new StrataError('E_BAD_INPUT', `${image}: every backing file of its chain is where the chain says: there is nothing to locate`, { file: image });

  const problems: string[] = [];
  let format: BackingCheck['format'] = null;
  let virtualSize: number | null = null;
  if (!fs.existsSync(candidate)) problems.push(`${candidate} does not exist`);
  else if (!fs.statSync(candidate).isFile()) problems.push(`${candidate} is not a file`);
  else if (layers.includes(candidate)) problems.push(`${candidate} is already a layer of this chain: pointing at it would make the chain loop`);
  else {
    try {
      const l = openLayer(candidate, null);
      try {
        format = l.format;
        virtualSize = l.virtualSize;
        const why = backingMismatch(l, expect.format, expect.virtualSize);
        if (why) problems.push(why);
      } finally {
        l.file.close();
      }
    } catch (e) {
      problems.push(e instanceof StrataError ? e.message : String(e));
    }
  }
  const locks = await Promise.all([...new Set([image, m.layer])].map((p) => imageLockState(p)));
  const held = locks.includes('locked');
  let command: string[] | null = null;
  if (!problems.length && !held) {
    // The command comes from the repair plan itself, so what is shown is what runs.
    const { plan } = await lookAndMaybeApply(image, { apply: false, backing: candidate, db: ctx.db, runtimeDir: ctx.runtimeDir });
    command = plan.steps.length === 1 ? plan.steps[0].spec.commands[0] : null;
  }
  return {
    image,
    missing: { file: expect.backingFile, expectedAt: m.path, referencedBy: m.layer },
    candidate,
    format,
    virtualSize,
    problems,
    held,
    command,
  };
}

/** The confirmed rebase: checked again, refused with the reason, else journaled and run. */
export async function rebaseOntoCandidate(image: string, candidate: string, ctx: Ctx): Promise<RebaseResult> {
  const check = await checkBackingCandidate(image, candidate, ctx);
  const layer = check.missing.referencedBy;
  if (check.problems.length) {
    throw new StrataError('E_BAD_INPUT', `${candidate}: cannot be the backing file of ${layer}: ${check.problems.join('; ')}`, { file: candidate });
  }
  if (check.held) {
    throw new StrataError('E_BUSY', `${layer}: held open by another process (a running QEMU?): Strata changes no image in use; stop it, then locate the backing file again`, { file: layer });
  }
  const r = await lookAndMaybeApply(image, { apply: true, backing: candidate, db: ctx.db, runtimeDir: ctx.runtimeDir });
  if (!r.applied || !r.outcome) {
    const why = r.outcome?.resolution ?? 'the plan had nothing to run';
    throw new StrataError('E_TOOL', `${layer}: pointing it at ${candidate} (qemu-img rebase -u) failed: ${why}`, { file: layer });
  }
  return { ...check, applied: true, plan: r.outcome.id };
}
