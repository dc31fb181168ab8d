// What was done with backup repositories, for the activity history: every backup (its journal,
// backup_journal, written before its first QMP command), and every restore, verify and prune
// (backup_activity: a row written when it starts and closed when it ends; a prune's row is written
// before its first write to the repository).
import path from 'node:path';
import type { Db } from '../store/db.ts';
import { StrataError } from '../errors.ts';
import { humanBytes } from '../units.ts';
import type { BackupActivityInfo, BackupActivityPoint, BackupActivityState } from './contract.ts';
import { isLevel, keepsSomething, type RetentionPolicy } from './rules.ts';
import { Repository, syncCatalog } from './repository.ts';
import { prune, recoverInterrupted, rollsForward, PRUNE_STEPS, type PruneJournal, type PrunePlan, type PruneStep } from './prune.ts';
import type { RestoreOptions, RestoreResult } from './restore.ts';
import type { VerifyResult } from './verify.ts';

type Action = 'restore' | 'verify' | 'prune';

export class BackupActivityLog {
  constructor(private db: Db) {}

  begin(action: Action, repo: string, summary: string, file: string | null = null, points: BackupActivityPoint[] = []): number {
    return Number(
      this.db
        .prepare("INSERT INTO backup_activity (action, repo, file, state, summary, points_json, created_at) VALUES (?, ?, ?, 'running', ?, ?, ?)")
        .run(action, repo, file, summary, JSON.stringify(points), new Date().toISOString()).lastInsertRowid,
    );
  }

  finish(id: number, end: { state: Exclude<BackupActivityState, 'running' | 'cancelled'>; points?: BackupActivityPoint[]; bytes?: number | null; note?: string | null }): void {
    const set = this.db.prepare('UPDATE backup_activity SET state = ?, points_json = COALESCE(?, points_json), bytes = ?, note = ?, finished_at = ? WHERE id = ?');
    set.run(end.state, end.points ? JSON.stringify(end.points) : null, end.bytes ?? null, end.note ?? null, new Date().toISOString(), id);
  }

  /** Runs `fn` recorded: its row begun first, closed with what `end` makes of the result, or failed with the error. */
  async record<T>(action: Action, repo: string, summary: string, file: string | null, fn: () => Promise<T> | T, end: (r: T) => Parameters<BackupActivityLog['finish']>[1]): Promise<T> {
    const id = this.begin(action, repo, summary, file);
    try {
      const r = await fn();
      this.finish(id, end(r));
      return r;
    } catch (e) {
      this.finish(id, { state: 'failed', note: (e as Error).message });
      throw e;
    }
  }

  /** A prune's journal as its step begins. */
  step(id: number, step: PruneStep | null, journal: PruneJournal): void {
    this.db.prepare('UPDATE backup_activity SET step = ?, journal_json = ? WHERE id = ?').run(step, JSON.stringify(journal), id);
  }

  /** Prunes a stopped Strata left running (of one repository, or all), with their journals. */
  interrupted(repo: string | null): { id: number; repo: string; step: PruneStep | null; journal: PruneJournal | null }[] {
    const rows = this.db.prepare("SELECT id, repo, step, journal_json FROM backup_activity WHERE action = 'prune' AND state = 'running' AND (? IS NULL OR repo = ?) ORDER BY id").all(repo, repo) as any[];
    return rows.map((r) => ({ id: r.id, repo: r.repo, step: (PRUNE_STEPS as readonly string[]).includes(r.step) ? r.step : null, journal: r.journal_json ? (JSON.parse(r.journal_json) as PruneJournal) : null }));
  }

  /** Backups, restores, verifies and prunes, newest first, up to `limit` of them. */
  list(limit: number): BackupActivityInfo[] {
    const n = Math.max(1, Math.min(1000, limit));
    const backups = (
      this.db
        .prepare(
          `SELECT j.*, c.bytes AS listed_bytes, c.level AS listed_level FROM backup_journal j
             LEFT JOIN backup_catalog c ON j.state = 'ok' AND c.repo = j.repo AND c.id = j.backup_id AND c.file = j.final
           ORDER BY j.id DESC LIMIT ?`,
        )
        .all(n) as any[]
    ).map(backupInfo);
    const others = (this.db.prepare('SELECT * FROM backup_activity ORDER BY id DESC LIMIT ?').all(n) as any[]).map(otherInfo);
    return [...backups, ...others].sort((a, b) => b.createdAt.localeCompare(a.createdAt)).slice(0, n);
  }
}

type End = Parameters<BackupActivityLog['finish']>[1];

/** How a restore is recorded once done. */
export function restoreEnd(r: RestoreResult, format: string): End {
  return { state: 'ok', points: [{ id: r.id, what: 'restored', note: r.checkpoint ? `${format}, with checkpoint ${r.checkpoint}` : format }], bytes: r.bytes };
}

/** A restore recorded in the history; one with a fresh checkpoint changed the manifest's restored list, so the catalog follows it. */
export async function recordedRestore(db: Db, o: RestoreOptions): Promise<RestoreResult> {
  const { restoreBackup } = await import('./restore.ts');
  const to = path.resolve(o.to);
  return new BackupActivityLog(db).record('restore', repoKey(o.repo), `restore ${o.id} to ${to}`, to, async () => {
    const r = await restoreBackup(o);
    // The restore is done and the manifest records it: a catalog that cannot be written now (SQLite
    // busy) does not make it a failure; every listing rebuilds the catalog from the manifest.
    if (r.checkpoint) {
      try {
        syncCatalog(db, Repository.open(o.repo));
      } catch {
        // rebuilt at the next backup:list
      }
    }
    return r;
  }, (r) => restoreEnd(r, o.format));
}

/** How a verify is recorded: damaged when any point is, with what was found. */
export function verifyEnd(rs: VerifyResult[]): End {
  return {
    state: rs.every((r) => r.ok) ? 'ok' : 'damaged',
    points: rs.map((r) => ({ id: r.id, what: r.ok ? 'verified' : 'damaged', note: r.ok ? null : `${r.file}: ${r.problems.join('; ')}` })),
    bytes: rs.reduce((n, r) => n + r.checkedBytes, 0),
  };
}

/** A policy that keeps something, or E_BAD_INPUT. */
export function retentionPolicy(p: RetentionPolicy): RetentionPolicy {
  if (!keepsSomething(p)) throw new StrataError('E_BAD_INPUT', 'keepLast, keepDaily or keepWeekly must be above 0: a prune never removes every backup');
  return { keepLast: p.keepLast, keepDaily: p.keepDaily, keepWeekly: p.keepWeekly };
}

/**
 * Prunes a stopped Strata left unfinished (of one repository, or of every one the history knows):
 * each is rolled back or finished under the repository's lock (see prune.ts), its row closed saying
 * which, and the catalog rebuilt. A repository another live process holds, or that cannot be read
 * now, is left for later. Returns what was done, in words.
 */
export function recoverPrunes(db: Db, dir: string | null = null): { repo: string; note: string }[] {
  const log = new BackupActivityLog(db);
  const out: { repo: string; note: string }[] = [];
  for (const row of log.interrupted(dir === null ? null : repoKey(dir))) {
    let repo: Repository;
    try {
      repo = Repository.open(row.repo);
      repo.lock();
    } catch {
      continue;
    }
    try {
      const r = recoverInterrupted(repo, row.journal, row.step);
      log.finish(row.id, { state: r.state === 'finished' ? 'ok' : 'failed', note: r.note });
      syncCatalog(db, repo);
      out.push({ repo: row.repo, note: `prune #${row.id} of ${row.repo} ${r.note}` });
    } finally {
      repo.unlock();
    }
  }
  return out;
}

/**
 * Applies a retention policy, journaled: under the repository lock, before the first write, a row
 * saying what it removes, merges and keeps, then the step each write begins with what finishing it
 * needs (a prune a stopped Strata left unfinished is finished or rolled back first). `confirmed`: the
 * ids the user saw in the plan; the prune is refused when the repository would now remove others.
 * The catalog follows the manifest.
 */
export async function journaledPrune(db: Db, dir: string, policy: RetentionPolicy, confirmed: string[] | null, onStep?: (step: PruneStep) => void): Promise<PrunePlan> {
  const log = new BackupActivityLog(db);
  const recovered = recoverPrunes(db, dir).map((r) => r.note);
  let row: number | null = null;
  let reached: PruneStep | null = null;
  try {
    const plan = await prune(dir, policy, true, {
      beforeWrite: (p, r, journal) => {
        const now = p.remove.map((x) => x.id);
        if (confirmed && now.join() !== confirmed.join()) {
          throw new StrataError('E_BAD_INPUT', `${r.dir}: the repository changed since the prune plan was made: it would now remove ${now.join(', ') || 'nothing'}, not ${confirmed.join(', ') || 'nothing'}; nothing was removed, plan again`, { file: r.dir });
        }
        row = log.begin('prune', r.dir, pruneSummary(p), null, prunePoints(p));
        log.step(row, null, journal);
      },
      step: (s, journal) => {
        log.step(row!, s, journal);
        reached = s;
        onStep?.(s);
      },
    }, recovered);
    syncCatalog(db, Repository.open(dir));
    if (row !== null) log.finish(row, { state: 'ok', points: prunePoints(plan), bytes: plan.freedBytes, note: plan.orphans.length ? `also removed ${plan.orphans.length} file(s) the manifest did not list: ${plan.orphans.join(', ')}` : null });
    return plan;
  } catch (e) {
    // From the swap on, the prune is finished, not undone: its row stays open for the next start.
    if (row !== null && !rollsForward(reached)) log.finish(row, { state: 'failed', note: `${(e as Error).message}; rolled back, nothing was removed` });
    throw e;
  }
}

function pruneSummary(p: PrunePlan): string {
  const merged = p.merge.map((m) => `, merge ${m.from.join(', ')} into ${m.into}`).join('');
  return p.remove.length ? `prune: remove ${p.remove.map((r) => r.id).join(', ')}${merged}, keep ${p.keep.length}` : `prune: nothing to remove, keep ${p.keep.length}`;
}

function prunePoints(p: PrunePlan): BackupActivityPoint[] {
  return [
    ...p.keep.map((k) => ({ id: k.id, what: 'kept' as const, note: k.why.join(', ') })),
    ...p.remove.map((r) => ({ id: r.id, what: 'removed' as const, note: r.mergedInto ? `${humanBytes(r.bytes)}, merged into ${r.mergedInto}` : humanBytes(r.bytes) })),
  ];
}

/** The repository's key in the journals: its absolute folder. */
export const repoKey = (repo: string) => path.resolve(repo);

const JOURNAL_STATE: Record<string, BackupActivityState> = { planned: 'running', running: 'running', 'writing-manifest': 'running', ok: 'ok', failed: 'failed', cancelled: 'cancelled' };

function backupInfo(r: any): BackupActivityInfo {
  const prefix = String(r.backup_id).split('-')[0];
  const level = isLevel(r.listed_level) ? r.listed_level : isLevel(prefix) ? prefix : null;
  const state = JOURNAL_STATE[r.state] ?? 'failed';
  const what = state === 'ok' ? 'taken' : state === 'running' ? 'running' : state;
  return {
    id: r.id, action: 'backup', repo: r.repo, file: r.image, level, state,
    summary: `${level ?? 'backup'} backup ${r.backup_id} of ${r.image}`,
    points: [{ id: r.backup_id, what, note: null }],
    bytes: r.listed_bytes ?? null, note: r.note ?? null, createdAt: r.created_at, finishedAt: r.finished_at ?? null,
  };
}

function otherInfo(r: any): BackupActivityInfo {
  return {
    id: r.id, action: r.action, repo: r.repo, file: r.file ?? null, level: null, state: r.state, summary: r.summary,
    points: JSON.parse(r.points_json), bytes: r.bytes ?? null, note: r.note ?? null, createdAt: r.created_at, finishedAt: r.finished_at ?? null,
  };
}
