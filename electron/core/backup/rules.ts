// The backup capability's rules as data, no I/O (the model is jobs/states.ts): the states a backup
// goes through and the legal moves between them, how a requested level becomes the level taken
// (with the checkpoint it starts from, or the reason it falls back to full), and which points a
// retention policy keeps, with what keeps every remaining point restorable.

export const BACKUP_STATES = ['planned', 'running', 'writing-manifest', 'ok', 'failed', 'cancelled', 'pruned'] as const;
export type BackupState = (typeof BACKUP_STATES)[number];

export const BACKUP_TRANSITIONS: Readonly<Record<BackupState, readonly BackupState[]>> = {
  planned: ['running', 'failed', 'cancelled'],
  running: ['writing-manifest', 'failed', 'cancelled'],
  'writing-manifest': ['ok', 'failed'],
  ok: ['pruned'],
  failed: [],
  cancelled: [],
  pruned: [],
};

export function canMove(from: BackupState, to: BackupState): boolean {
  return BACKUP_TRANSITIONS[from].includes(to);
}

/** A state a journaled backup may be left in by a crash: its partial file and checkpoint must go. */
export function needsCleanup(state: BackupState): boolean {
  return state === 'planned' || state === 'running' || state === 'writing-manifest';
}

/**
 * How a backup's data reaches the repository's disk, and where its digests come from:
 *  - 'direct': an offline full or copy, not compressed: past the page cache (O_DIRECT), the disk
 *    writing while QEMU copies, and the digests hashed from the source chain at the same time (the
 *    "guest" scheme). Its source does not change while it is read (Strata's daemon holds it), so the
 *    bytes hashed are the bytes copied. The backup does not push the desktop's working set out of
 *    memory, and it does not depend on how fast the kernel writes back a flood of dirty pages: on the
 *    2-core test machine 1 GiB took 0.97-1.1 s in every state of its disk (through the page cache:
 *    0.92-2.4 s), 4 GiB 3.4-3.9 s (through the page cache 5.6-13 s; qemu-img convert + sync 3.5-15 s);
 *  - 'cached': everything else (a running VM's disk changes while it is read; an incremental's or a
 *    differential's few clusters; a compressed file holds other bytes than the disk): through the
 *    page cache, one fsync at the end, and the digests hashed from the backup file meanwhile (the
 *    "host" scheme).
 */
export type CopyPath = 'cached' | 'direct';

export function copyPath(o: { offline: boolean; since: string | null; compress: boolean }): CopyPath {
  return o.offline && o.since === null && !o.compress ? 'direct' : 'cached';
}

export const LEVELS = ['full', 'inc', 'diff', 'copy'] as const;
export type Level = (typeof LEVELS)[number];

export function isLevel(s: unknown): s is Level {
  return typeof s === 'string' && (LEVELS as readonly string[]).includes(s);
}

/** What resolution needs to know about a backup already in the repository. */
export interface PointFacts {
  id: string;
  level: Level;
  parent: string | null;
  checkpoint: string | null;
  createdAt: string;
  /** the disk it was taken of (absolute path), when known */
  source?: string;
}

/**
 * A disk restored from a point with a fresh checkpoint (strata restore --checkpoint): when it was
 * restored, it was point `id` exactly, and its bitmap `checkpoint` has recorded every write since.
 */
export interface RestoredDisk {
  /** absolute path of the restored file */
  image: string;
  id: string;
  checkpoint: string;
  restoredAt: string;
}

/**
 * The points a backup of `image` can start from, oldest first. A restored disk's history is the point
 * it was restored from (with the points that point needs) and its own backups since that restore; any
 * other disk's is every point except those taken of restored disks. The checkpoint math still decides
 * whether a point's checkpoint is usable: a record never stands in for the bitmap.
 */
export function pointsOfDisk(points: PointFacts[], restored: RestoredDisk[], image: string): PointFacts[] {
  const mine = restored.filter((r) => r.image === image).pop();
  if (mine) {
    const from = new Set(ancestry(points, mine.id));
    return points.filter((p) => from.has(p.id) || (p.source === image && p.createdAt >= mine.restoredAt));
  }
  const others = new Set(restored.map((r) => r.image));
  return points.filter((p) => p.source === undefined || !others.has(p.source));
}

/** The checkpoint math's answer for one checkpoint of the disk being backed up. */
export type CheckpointAnswer = { state: 'ok'; dirtyBytes: number } | { state: 'unknown'; problems: string[] } | { state: 'missing' };

export interface LevelRequest {
  /** null: the default (inc when possible, else full) */
  requested: Level | null;
  since: string | null;
  /** ok points, oldest first */
  points: PointFacts[];
  answer: (checkpoint: string) => CheckpointAnswer;
}

export type LevelResolution =
  | { ok: true; level: Level; requested: Level | null; since: string | null; parent: string | null; fallback: string | null; dirtyBytes: number | null }
  | { ok: false; error: string };

/** requested level + catalog + checkpoint math → the level taken, the checkpoint it starts from, or why full. */
export function resolveLevel(r: LevelRequest): LevelResolution {
  if (r.since !== null && r.requested !== null && r.requested !== 'diff') {
    return { ok: false, error: `--since names the checkpoint of a differential backup; it cannot be used with --level ${r.requested}` };
  }
  const requested = r.requested ?? (r.since !== null ? 'diff' : null);
  const full = (fallback: string | null): LevelResolution => ({ ok: true, level: 'full', requested, since: null, parent: null, fallback, dirtyBytes: null });
  if (requested === 'full') return full(null);
  if (requested === 'copy') return { ok: true, level: 'copy', requested, since: null, parent: null, fallback: null, dirtyBytes: null };
  const withCheckpoint = r.points.filter((p) => p.checkpoint !== null);
  let base: PointFacts | undefined;
  if (r.since !== null) {
    base = withCheckpoint.find((p) => p.checkpoint === r.since);
    if (!base) return { ok: false, error: `--since ${r.since}: no backup in this repository has checkpoint '${r.since}' (a differential needs the backup taken at that checkpoint)` };
  } else if (requested === 'diff') {
    base = withCheckpoint.filter((p) => p.level === 'full').pop();
    if (!base) return full('there is no full backup in the repository to be differential to');
  } else {
    base = withCheckpoint[withCheckpoint.length - 1];
    if (!base) return full(requested === null ? 'first backup in this repository' : 'there is no previous backup with a checkpoint in the repository');
  }
  const cp = base.checkpoint!;
  const a = r.answer(cp);
  if (a.state === 'missing') return full(`checkpoint '${cp}' (of backup ${base.id}) is not in the disk's chain any more`);
  if (a.state === 'unknown') return full(`changes since checkpoint '${cp}' (of backup ${base.id}) cannot be known: ${a.problems.join('; ')}`);
  const level: Level = requested ?? 'inc';
  return { ok: true, level, requested, since: cp, parent: base.id, fallback: null, dirtyBytes: a.dirtyBytes };
}

/** The files a point needs to be restored: itself and its parents down to a full. */
export function ancestry(points: PointFacts[], id: string): string[] {
  const byId = new Map(points.map((p) => [p.id, p]));
  const out: string[] = [];
  for (let p = byId.get(id); p; p = p.parent ? byId.get(p.parent) : undefined) {
    if (out.includes(p.id)) break;
    out.push(p.id);
  }
  return out;
}

export interface RetentionPolicy {
  keepLast: number;
  keepDaily: number;
  keepWeekly: number;
}

/** A policy that keeps something: a prune never removes every backup. */
export function keepsSomething(p: RetentionPolicy): boolean {
  return p.keepLast + p.keepDaily + p.keepWeekly > 0;
}

export interface RetentionPlan {
  /** ids kept, oldest first, each with why */
  keep: { id: string; why: string[] }[];
  /** ids removed, oldest first (the merged ones too) */
  remove: string[];
  /**
   * Points removed by folding their data into a kept point: `from` (newest first, consecutive
   * parents of `into`, none kept) go into `into`, whose parent becomes `parent` (the nearest kept one).
   */
  merge: { into: string; from: string[]; parent: string }[];
}

const dayOf = (iso: string) => iso.slice(0, 10);
function weekOf(iso: string): string {
  // ISO week: the Thursday of the point's week names the year and week.
  const d = new Date(Date.UTC(+iso.slice(0, 4), +iso.slice(5, 7) - 1, +iso.slice(8, 10)));
  const wd = (d.getUTCDay() + 6) % 7;
  d.setUTCDate(d.getUTCDate() - wd + 3);
  const y = d.getUTCFullYear();
  const jan4 = new Date(Date.UTC(y, 0, 4));
  const week = 1 + Math.round(((d.getTime() - jan4.getTime()) / 86400000 - 3 + ((jan4.getUTCDay() + 6) % 7)) / 7);
  return `${y}-W${String(week).padStart(2, '0')}`;
}

/**
 * Which points a policy keeps. keep-last: the N newest; keep-daily/weekly: the newest point of each of
 * the N newest days/weeks that have one. Every remaining point stays restorable: an inc or diff a kept
 * point is restored through is merged into the one point above it on that way (its successor), or
 * kept when more than one kept point builds on it through different successors (merging it into each
 * would copy its data twice); the full at the bottom is always kept.
 */
export function selectRetention(points: PointFacts[], policy: RetentionPolicy): RetentionPlan {
  const why = new Map<string, string[]>();
  const mark = (id: string, reason: string) => {
    const list = why.get(id) ?? [];
    if (!list.includes(reason)) list.push(reason);
    why.set(id, list);
  };
  const newestFirst = [...points].reverse();
  newestFirst.slice(0, Math.max(0, policy.keepLast)).forEach((p) => mark(p.id, 'keep-last'));
  const bucket = (n: number, key: (iso: string) => string, label: string) => {
    const seen = new Set<string>();
    for (const p of newestFirst) {
      if (seen.size >= n) break;
      const k = key(p.createdAt);
      if (seen.has(k)) continue;
      seen.add(k);
      mark(p.id, `${label} ${k}`);
    }
  };
  bucket(Math.max(0, policy.keepDaily), dayOf, 'keep-daily');
  bucket(Math.max(0, policy.keepWeekly), weekOf, 'keep-weekly');
  const byId = new Map(points.map((p) => [p.id, p]));
  const order = new Map(points.map((p, i) => [p.id, i]));
  const oldestFirst = (ids: Iterable<string>) => [...ids].sort((x, y) => order.get(x)! - order.get(y)!);
  const parentOf = (id: string) => {
    const parent = byId.get(id)?.parent;
    return parent && byId.has(parent) ? parent : null;
  };
  // The points a kept one is restored through, up to the next kept one: intermediates with more
  // than one successor on those ways are kept too, until nothing changes.
  for (let changed = true; changed; ) {
    changed = false;
    const successors = new Map<string, Set<string>>();
    const users = new Map<string, Set<string>>();
    for (const id of [...why.keys()]) {
      for (let below = id, a = parentOf(id); a && !why.has(a); below = a, a = parentOf(a)) {
        if (parentOf(a) === null) break;
        (successors.get(a) ?? successors.set(a, new Set()).get(a)!).add(below);
        (users.get(a) ?? users.set(a, new Set()).get(a)!).add(id);
      }
    }
    for (const [a, s] of successors) {
      if (s.size < 2) continue;
      for (const u of oldestFirst(users.get(a)!)) mark(a, `needed to restore ${u}`);
      changed = true;
    }
  }
  // The full at the bottom of each kept point's way is kept; the inc/diffs between are merged.
  const merge: RetentionPlan['merge'] = [];
  for (const id of [...why.keys()]) {
    const from: string[] = [];
    let a = parentOf(id);
    for (; a && !why.has(a) && parentOf(a) !== null; a = parentOf(a)) from.push(a);
    if (a && !why.has(a)) mark(a, `needed to restore ${id}`);
    if (from.length && a) merge.push({ into: id, from, parent: a });
  }
  merge.sort((x, y) => order.get(x.into)! - order.get(y.into)!);
  return {
    keep: points.filter((p) => why.has(p.id)).map((p) => ({ id: p.id, why: why.get(p.id)! })),
    remove: points.filter((p) => !why.has(p.id)).map((p) => p.id),
    merge,
  };
}
