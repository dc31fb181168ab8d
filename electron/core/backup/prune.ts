// Retention: which points a policy removes (rules.ts decides: an inc/diff a kept point is restored
// through is merged into its successor, the full below is kept), shown as a plan first. Applying it,
// under the repository lock and journaled by the caller (hooks) before its first write:
//   1. copying    each merge's kept point S is copied to a temporary file beside it (.S.merging.qcow2)
//   2. rebasing   `qemu-img rebase` (safe mode) of the copy onto the new parent: every cluster of the
//                 removed points that S does not overwrite is written into the copy, so it reads as S did
//   3. digesting  the copy is fsynced, its size and digests taken (and journaled)
//   4. swapping   each copy is renamed over S (atomic: S is the old file or the merged one)
//   5. writing-manifest  the manifest without the removed points, S with its new parent and digests
//   6. deleting   the removed points' files and the orphans
// A crash before 4 is rolled back (the copies deleted: nothing else was written); from 4 on it is
// finished (rolled forward) from the journal: recoverInterrupted(). Files named like backups that the
// manifest does not list, and merge copies, are orphans: the next prune deletes them.
import fs from 'node:fs';
import path from 'node:path';
import { StrataError } from '../errors.ts';
import { Repository, fsyncPath, type BackupEntry } from './repository.ts';
import { selectRetention, type RetentionPolicy } from './rules.ts';
import { tool } from './tools.ts';
import { allocationExtents, withChain } from '../qcow2/chain.ts';
import { totalBytes } from '../extents.ts';
import { recordDigests } from './verify.ts';

export interface PruneMerge {
  /** the kept point the removed ones are merged into */
  into: string;
  /** the removed points merged into it, newest first */
  from: string[];
  /** its parent afterwards (the nearest kept point it builds on) */
  parent: string;
  /** its file (absolute), rewritten by the merge */
  file: string;
  /** how much its file grew (null in a plan: known once merged) */
  grownBytes: number | null;
}

export interface PrunePlan {
  applied: boolean;
  keep: { id: string; why: string[] }[];
  /** every point that leaves the list; mergedInto: the kept point its data went into, or null */
  remove: { id: string; file: string; bytes: number; mergedInto: string | null }[];
  merge: PruneMerge[];
  /** files in the repository named like backups that the manifest does not list */
  orphans: string[];
  /** bytes of the removed files (the merged points' growth is in merge[].grownBytes) */
  freedBytes: number;
  /** prunes a stopped Strata left unfinished, finished or rolled back before this one, in words */
  recovered: string[];
}

export const PRUNE_STEPS = ['copying', 'rebasing', 'digesting', 'swapping', 'writing-manifest', 'deleting'] as const;
export type PruneStep = (typeof PRUNE_STEPS)[number];

/** A step from which an interrupted prune is finished rather than rolled back. */
export function rollsForward(step: PruneStep | null): boolean {
  return step !== null && PRUNE_STEPS.indexOf(step) >= PRUNE_STEPS.indexOf('swapping');
}

/** What the journal keeps of an applied prune: enough to finish or roll it back after a crash. */
export interface PruneJournal {
  remove: string[];
  /** the removed points' file names */
  removeFiles: string[];
  orphans: string[];
  merges: {
    into: string;
    from: string[];
    parent: string;
    /** file names inside the repository */
    file: string;
    temp: string;
    /** the merged point's new manifest fields, once digested */
    entry: Pick<BackupEntry, 'parent' | 'since' | 'bytes' | 'dirtyBytes' | 'digests'> | null;
    bytesBefore: number;
  }[];
}

const BACKUP_FILE = /^(full|inc|diff|copy)-\d+\.qcow2$/;
const MERGE_COPY = /^\.(full|inc|diff|copy)-\d+\.qcow2\.merging$/;
const mergeCopyOf = (file: string) => `.${file}.merging`;

export interface PruneHooks {
  /** applying: called under the repository lock with the plan, before the first write; may refuse by throwing */
  beforeWrite?: (plan: PrunePlan, repo: Repository, journal: PruneJournal) => void;
  /** applying: each step as it begins, with the journal as it stands (digests once taken) */
  step?: (step: PruneStep, journal: PruneJournal) => void;
}

export async function prune(dir: string, policy: RetentionPolicy, apply: boolean, hooks: PruneHooks = {}, recovered: string[] = []): Promise<PrunePlan> {
  const repo = Repository.open(dir);
  if (apply) repo.lock();
  try {
    const sel = selectRetention(repo.points, policy);
    const mergedInto = new Map(sel.merge.flatMap((m) => m.from.map((f) => [f, m.into] as const)));
    const gone = new Set(sel.remove);
    const remove = repo.manifest.backups.filter((b) => gone.has(b.id)).map((b) => ({ id: b.id, file: repo.fileOf(b), bytes: b.bytes, mergedInto: mergedInto.get(b.id) ?? null }));
    const listed = new Set(repo.manifest.backups.map((b) => b.file));
    const orphans = fs.readdirSync(repo.dir).filter((n) => (BACKUP_FILE.test(n) && !listed.has(n)) || MERGE_COPY.test(n)).map((n) => path.join(repo.dir, n));
    const merge: PruneMerge[] = sel.merge.map((m) => ({ ...m, file: repo.fileOf(repo.find(m.into)), grownBytes: null }));
    const plan: PrunePlan = { applied: false, keep: sel.keep, remove, merge, orphans, freedBytes: remove.reduce((n, r) => n + r.bytes, 0), recovered };
    if (!apply) return plan;
    const journal: PruneJournal = {
      remove: remove.map((r) => r.id),
      removeFiles: remove.map((r) => path.basename(r.file)),
      orphans: orphans.map((o) => path.basename(o)),
      merges: sel.merge.map((m) => {
        const into = repo.find(m.into);
        return { ...m, file: into.file, temp: mergeCopyOf(into.file), entry: null, bytesBefore: into.bytes };
      }),
    };
    hooks.beforeWrite?.(plan, repo, journal);
    if (remove.length === 0 && orphans.length === 0) return plan;
    let step: PruneStep | null = null;
    const begin = (s: PruneStep) => {
      step = s;
      hooks.step?.(s, journal);
    };
    try {
      await mergeCopies(repo, journal, begin);
      begin('swapping');
    } catch (e) {
      if (!rollsForward(step)) rollBack(repo, journal);
      throw e;
    }
    finishForward(repo, journal, begin);
    const byInto = new Map(journal.merges.map((m) => [m.into, m.entry!.bytes - m.bytesBefore]));
    return { ...plan, applied: true, merge: plan.merge.map((m) => ({ ...m, grownBytes: byInto.get(m.into) ?? null })) };
  } finally {
    repo.unlock();
  }
}

/** Steps 1–3: the merged copies, made beside the points they replace, digested. */
async function mergeCopies(repo: Repository, journal: PruneJournal, begin: (s: PruneStep) => void): Promise<void> {
  const at = (name: string) => path.join(repo.dir, name);
  begin('copying');
  for (const m of journal.merges) fs.copyFileSync(at(m.file), at(m.temp), fs.constants.COPYFILE_FICLONE);
  begin('rebasing');
  for (const m of journal.merges) {
    // Safe mode: what the copy read through its old backing and does not hold itself is written
    // into it. Only the clusters the points between hold are compared (the new backing is below the
    // old one in the same chain). No flushes (-t unsafe): the copy is fsynced once, next step.
    const parent = repo.find(m.parent);
    await tool('qemu-img', ['rebase', '-f', 'qcow2', '-t', 'unsafe', '-b', parent.file, '-F', 'qcow2', at(m.temp)], at(m.temp));
  }
  begin('digesting');
  for (const m of journal.merges) {
    const temp = at(m.temp);
    fsyncPath(temp);
    const digests = await recordDigests(temp);
    // Its changes since the new parent's checkpoint: everything it defines itself (data and zero clusters).
    const own = withChain(temp, (c) => totalBytes(allocationExtents(c.layers[0])));
    m.entry = { parent: m.parent, since: repo.find(m.parent).checkpoint, bytes: digests.fileBytes, dirtyBytes: own, digests };
  }
  fsyncPath(repo.dir);
}

function rollBack(repo: Repository, journal: PruneJournal): void {
  for (const m of journal.merges) fs.rmSync(path.join(repo.dir, m.temp), { force: true });
  fsyncPath(repo.dir);
}

/** Steps 4–6, each of them safe to repeat: the copies swapped in, the manifest, the deletions. */
function finishForward(repo: Repository, journal: PruneJournal, begin: (s: PruneStep) => void): void {
  const at = (name: string) => path.join(repo.dir, name);
  // A copy still there has not been swapped in yet (the rename is atomic, and it is only made once
  // the copy is complete and digested); one gone has.
  for (const m of journal.merges) if (fs.existsSync(at(m.temp))) fs.renameSync(at(m.temp), at(m.file));
  fsyncPath(repo.dir);
  begin('writing-manifest');
  const gone = new Set(journal.remove);
  const entries = new Map(journal.merges.map((m) => [m.into, m.entry!]));
  repo.manifest.backups = repo.manifest.backups.filter((b) => !gone.has(b.id)).map((b) => (entries.has(b.id) ? { ...b, ...entries.get(b.id)! } : b));
  repo.save();
  begin('deleting');
  const listed = new Set(repo.manifest.backups.map((b) => b.file));
  const files = [...journal.removeFiles, ...journal.orphans];
  for (const f of files) if (!listed.has(f)) fs.rmSync(at(f), { force: true });
  fsyncPath(repo.dir);
}

/**
 * A prune a stopped Strata left at `step` (null: before its first write): rolled back before the
 * swap, finished from it on. The caller holds the repository lock. Says what it did.
 */
export function recoverInterrupted(repo: Repository, journal: PruneJournal | null, step: PruneStep | null): { state: 'finished' | 'rolled-back'; note: string } {
  if (!journal || !rollsForward(step)) {
    if (journal) rollBack(repo, journal);
    return { state: 'rolled-back', note: `interrupted${step ? ` while ${step}` : ' before its first write'}: rolled back, nothing was removed${journal?.merges.length ? ' (the merge copies were deleted; the points they were for are unchanged)' : ''}` };
  }
  if (journal.merges.some((m) => m.entry === null)) {
    throw new StrataError('E_INTERNAL', `${repo.dir}: the prune journal reached ${step} without the merged points' digests`, { file: repo.dir });
  }
  finishForward(repo, journal, () => {});
  const merged = journal.merges.map((m) => `${m.from.join(', ')} into ${m.into}`).join('; ');
  return { state: 'finished', note: `interrupted while ${step}: finished, removed ${journal.remove.join(', ') || 'nothing'}${merged ? ` (merged ${merged})` : ''}` };
}
