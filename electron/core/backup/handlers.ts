// Backups: list a repository's points, take one of an offline image (QEMU copies the data in
// Strata's own storage daemon; its job's progress is pushed as backup:progress), cancel it, restore
// a point to a new image, verify. The answers are the CLI's --json shapes.
import path from 'node:path';
import type { EventListener, HandlersFor } from '../handlers.ts';
import type { Db } from '../store/db.ts';
import type { backupArgs } from './contract.ts';
import { BackupJournal, Repository, catalogCheckpoints, listPoints, syncCatalog } from './repository.ts';
import { withChain } from '../qcow2/chain.ts';
import { BackupActivityLog } from './activity.ts';
import { prune, type PrunePlan } from './prune.ts';
import { ancestry, keepsSomething, type RetentionPolicy } from './rules.ts';
import { StrataError } from '../errors.ts';
import { humanBytes } from '../units.ts';
import type { BackupActivityPoint } from './contract.ts';

const PROGRESS_MS = 200;

/** A backup this service is running, by its repository (the lock allows one at a time). */
interface Running {
  abort: AbortController;
  /** settles when the backup has finished or been cleaned up */
  settled: Promise<unknown>;
}

export function createBackupHandlers(d: { db: Db; dataDir: string; emit: EventListener }): HandlersFor<typeof backupArgs> {
  const running = new Map<string, Running>();
  const log = new BackupActivityLog(d.db);
  return {
    'backup:list': ({ repo }) => listPoints(Repository.open(repo)),
    'backup:take': async ({ image, repo, level, dryRun, speed }) => {
      const { takeBackup, takenDoc } = await import('./take.ts');
      let last = 0;
      const abort = new AbortController();
      const taking = takeBackup({
        image,
        repo,
        level: level ?? null,
        since: null,
        compress: false,
        dryRun: dryRun ?? false,
        dataDir: d.dataDir,
        db: d.db,
        speed,
        signal: abort.signal,
        onProgress: (j) => {
          const now = Date.now();
          if (now - last < PROGRESS_MS && j.state === 'running') return;
          last = now;
          d.emit('backup:progress', { image, repo, current: j.current, total: j.total, rate: j.rate, etaSeconds: j.etaSeconds, state: j.state });
        },
      });
      const key = path.resolve(repo);
      const mine: Running = { abort, settled: taking.catch(() => {}) };
      if (!dryRun && !running.has(key)) running.set(key, mine);
      try {
        return takenDoc(await taking);
      } finally {
        if (running.get(key) === mine) running.delete(key);
      }
    },
    'backup:cancel': async ({ repo }) => {
      const key = path.resolve(repo);
      const r = running.get(key);
      if (!r) return { cancelled: false, id: null, note: null };
      r.abort.abort();
      await r.settled;
      // The journal says how it ended: cancelled (and what was removed), or ok when it won the race.
      const row = new BackupJournal(d.db).latest(key);
      return row && row.state === 'cancelled' ? { cancelled: true, id: row.backupId, note: row.note } : { cancelled: false, id: null, note: null };
    },
    'backup:restore': async ({ repo, id, to, format }) => {
      const { restoreBackup } = await import('./restore.ts');
      return log.record('restore', path.resolve(repo), `restore ${id} to ${to}`, to, () => restoreBackup({ repo, id, to, format: format ?? 'qcow2', force: false }), (r) => ({
        state: 'ok', points: [{ id: r.id, what: 'restored', note: format ?? 'qcow2' }], bytes: r.bytes,
      }));
    },
    'backup:verify': async ({ repo, id }) => {
      const { verifyRepository } = await import('./verify.ts');
      return log.record('verify', path.resolve(repo), id ? `verify ${id}` : 'verify every point', null, () => verifyRepository(Repository.open(repo), id), (rs) => ({
        state: rs.every((r) => r.ok) ? 'ok' : 'damaged',
        points: rs.map((r) => ({ id: r.id, what: r.ok ? 'verified' : 'damaged', note: r.ok ? null : `${r.file}: ${r.problems.join('; ')}` })),
        bytes: rs.reduce((n, r) => n + r.checkedBytes, 0),
      }));
    },
    'backup:checkpoints': ({ image }) => {
      const names = new Set(withChain(image, (c) => c.layers.flatMap((l) => l.bitmaps.map((b) => b.name))));
      return catalogCheckpoints(d.db).filter((c) => names.has(c.checkpoint));
    },
    'backup:prune-plan': ({ repo, ...policy }) => {
      const plan = prune(repo, keeping(policy), false);
      const points = Repository.open(repo).points;
      return { ...plan, restorable: plan.keep.map((k) => ({ id: k.id, from: ancestry(points, k.id) })) };
    },
    'backup:prune': ({ repo, remove, ...policy }) => {
      // Journaled under the repository lock before the manifest is written; a prune a stopped
      // Strata left running is closed first (its order left at most unlisted files: orphans now).
      let row: number | null = null;
      try {
        const plan = prune(repo, keeping(policy), true, {
          beforeWrite: (p, r) => {
            const now = p.remove.map((x) => x.id);
            if (now.join() !== remove.join()) {
              throw new StrataError('E_BAD_INPUT', `${r.dir}: the repository changed since the prune plan was made: it would now remove ${now.join(', ') || 'nothing'}, not ${remove.join(', ') || 'nothing'}; nothing was removed, plan again`, { file: r.dir });
            }
            log.closeInterrupted(r.dir, 'interrupted: Strata stopped during this prune; the manifest is written first, so it left at most unlisted files, removed by the next prune');
            row = log.begin('prune', r.dir, pruneSummary(p), null, prunePoints(p));
          },
        });
        // The catalog mirrors the manifest: the removed points leave it too.
        syncCatalog(d.db, Repository.open(repo));
        if (row !== null) log.finish(row, { state: 'ok', points: prunePoints(plan), bytes: plan.freedBytes, note: plan.orphans.length ? `also removed ${plan.orphans.length} file(s) the manifest did not list: ${plan.orphans.join(', ')}` : null });
        return plan;
      } catch (e) {
        if (row !== null) log.finish(row, { state: 'failed', note: (e as Error).message });
        throw e;
      }
    },
  };
}

function keeping(p: RetentionPolicy): RetentionPolicy {
  if (!keepsSomething(p)) throw new StrataError('E_BAD_INPUT', 'keepLast, keepDaily or keepWeekly must be above 0: a prune never removes every backup');
  return { keepLast: p.keepLast, keepDaily: p.keepDaily, keepWeekly: p.keepWeekly };
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
