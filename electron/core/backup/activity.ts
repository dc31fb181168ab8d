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
import { prune, type PrunePlan } from './prune.ts';
import type { RestoreResult } from './restore.ts';
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

  /** Prunes of a repository a stopped Strata left running: closed, saying what became of them. */
  closeInterrupted(repo: string, note: string): void {
    this.db.prepare("UPDATE backup_activity SET state = 'failed', note = ?, finished_at = ? WHERE repo = ? AND action = 'prune' AND state = 'running'").run(note, new Date().toISOString(), repo);
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
 * Applies a retention policy, journaled: under the repository lock, before the manifest is written,
 * a row saying what it removes and keeps (a prune a stopped Strata left running is closed first: its
 * order left at most unlisted files, orphans now). `confirmed`: the ids the user saw in the plan;
 * the prune is refused when the repository would now remove others. The catalog follows the manifest.
 */
export function journaledPrune(db: Db, dir: string, policy: RetentionPolicy, confirmed: string[] | null): PrunePlan {
  const log = new BackupActivityLog(db);
  let row: number | null = null;
  try {
    const plan = prune(dir, policy, true, {
      beforeWrite: (p, r) => {
        const now = p.remove.map((x) => x.id);
        if (confirmed && now.join() !== confirmed.join()) {
          throw new StrataError('E_BAD_INPUT', `${r.dir}: the repository changed since the prune plan was made: it would now remove ${now.join(', ') || 'nothing'}, not ${confirmed.join(', ') || 'nothing'}; nothing was removed, plan again`, { file: r.dir });
        }
        log.closeInterrupted(r.dir, 'interrupted: Strata stopped during this prune; the manifest is written first, so it left at most unlisted files, removed by the next prune');
        row = log.begin('prune', r.dir, pruneSummary(p), null, prunePoints(p));
      },
    });
    syncCatalog(db, Repository.open(dir));
    if (row !== null) log.finish(row, { state: 'ok', points: prunePoints(plan), bytes: plan.freedBytes, note: plan.orphans.length ? `also removed ${plan.orphans.length} file(s) the manifest did not list: ${plan.orphans.join(', ')}` : null });
    return plan;
  } catch (e) {
    if (row !== null) log.finish(row, { state: 'failed', note: (e as Error).message });
    throw e;
  }
}

function pruneSummary(p: PrunePlan): string {
  return p.remove.length ? `prune: remove ${p.remove.map((r) => r.id).join(', ')}, keep ${p.keep.length}` : `prune: nothing to remove, keep ${p.keep.length}`;
}

function prunePoints(p: PrunePlan): BackupActivityPoint[] {
  return [
    ...p.keep.map((k) => ({ id: k.id, what: 'kept' as const, note: k.why.join(', ') })),
    ...p.remove.map((r) => ({ id: r.id, what: 'removed' as const, note: humanBytes(r.bytes) })),
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
