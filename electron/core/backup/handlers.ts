// Backups: list a repository's points, take one of an offline image (QEMU copies the data in
// Strata's own storage daemon; its job's progress is pushed as backup:progress), cancel it, restore
// a point to a new image, verify. The answers are the CLI's --json shapes.
import path from 'node:path';
import type { EventListener, HandlersFor } from '../handlers.ts';
import type { Db } from '../store/db.ts';
import type { backupArgs } from './contract.ts';
import { BackupJournal, Repository, catalogCheckpoints, catalogRestored, listPoints, syncCatalog } from './repository.ts';
import { withChain } from '../qcow2/chain.ts';
import { BackupActivityLog, journaledPrune, recordedRestore, recoverPrunes, repoKey, retentionPolicy, verifyEnd } from './activity.ts';
import { prune } from './prune.ts';
import { ancestry } from './rules.ts';

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
  // Prunes a crash left unfinished are finished or rolled back first: at start, and before a
  // repository is listed or planned (one that could not be reached at start).
  const recover = (repo: string | null) => {
    for (const note of recoverPrunes(d.db, repo)) d.emit('backup:changed', { repo: note.repo, why: 'recovered' });
  };
  recover(null);
  // What interrupted backups left (files, daemons; see take.ts tidyInterruptedBackups): at start for
  // every repository the journal has one unfinished in, and before a repository is listed.
  // A backup of this service waits for a tidy of its repository (the tidy holds the lock a moment).
  const tidying = new Map<string, Promise<void>>();
  const tidy = (repo: string): Promise<void> => {
    const key = repoKey(repo);
    if (running.has(key)) return Promise.resolve();
    const p = (async () => {
      await tidying.get(key);
      const { tidyInterruptedBackups } = await import('./take.ts');
      const said = await tidyInterruptedBackups(d.db, repo, path.join(d.dataDir, 'run')).catch(() => []);
      if (said.length) d.emit('backup:changed', { repo, why: 'recovered' });
    })();
    tidying.set(key, p);
    return p;
  };
  for (const repo of new BackupJournal(d.db).unfinishedRepos()) void tidy(repo);
  return {
    'backup:list': async ({ repo }) => {
      recover(repo);
      await tidy(repo);
      // The catalog is rebuilt from the manifest whenever the repository is opened; the app reads its restored disks from it.
      const r = Repository.open(repo);
      syncCatalog(d.db, r);
      return listPoints(r, catalogRestored(d.db, r.dir));
    },
    'backup:take': async ({ image, repo, level, dryRun, speed }) => {
      await tidying.get(repoKey(repo));
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
      const key = repoKey(repo);
      const mine: Running = { abort, settled: taking.catch(() => {}) };
      if (!dryRun && !running.has(key)) running.set(key, mine);
      try {
        return takenDoc(await taking);
      } finally {
        if (running.get(key) === mine) running.delete(key);
      }
    },
    'backup:cancel': async ({ repo }) => {
      const key = repoKey(repo);
      const r = running.get(key);
      if (!r) return { cancelled: false, id: null, note: null };
      r.abort.abort();
      await r.settled;
      // The journal says how it ended: cancelled (and what was removed), or ok when it won the race.
      const row = new BackupJournal(d.db).latest(key);
      return row && row.state === 'cancelled' ? { cancelled: true, id: row.backupId, note: row.note } : { cancelled: false, id: null, note: null };
    },
    'backup:restore': ({ repo, id, to, format, checkpoint }) => recordedRestore(d.db, { repo, id, to, format: format ?? 'qcow2', force: false, checkpoint: checkpoint ?? false }),
    'backup:verify': async ({ repo, id }) => {
      const { verifyRepository } = await import('./verify.ts');
      return log.record('verify', repoKey(repo), id ? `verify ${id}` : 'verify every point', null, () => verifyRepository(Repository.open(repo), id), verifyEnd);
    },
    'backup:checkpoints': ({ image }) => {
      const names = new Set(withChain(image, (c) => c.layers.flatMap((l) => l.bitmaps.map((b) => b.name))));
      return catalogCheckpoints(d.db).filter((c) => names.has(c.checkpoint));
    },
    'backup:prune-plan': async ({ repo, ...policy }) => {
      recover(repo);
      const plan = await prune(repo, retentionPolicy(policy), false);
      // Each point that stays as the prune leaves it: a merged one builds on its new parent.
      const newParent = new Map(plan.merge.map((m) => [m.into, m.parent]));
      const points = Repository.open(repo).points.map((p) => ({ ...p, parent: newParent.get(p.id) ?? p.parent }));
      return { ...plan, restorable: plan.keep.map((k) => ({ id: k.id, from: ancestry(points, k.id) })) };
    },
    'backup:prune': async ({ repo, remove, ...policy }) => {
      try {
        return await journaledPrune(d.db, repo, retentionPolicy(policy), remove);
      } finally {
        // The points, their files and the catalog's checkpoints changed (or may have): every view says so.
        d.emit('backup:changed', { repo: repoKey(repo), why: 'pruned' });
      }
    },
  };
}
