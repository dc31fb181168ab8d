// Backups: list a repository's points, take one of an offline image (QEMU copies the data in
// Strata's own storage daemon; its job's progress is pushed as backup:progress), restore a point to
// a new image, verify. The answers are the CLI's --json shapes.
import type { EventListener, HandlersFor } from '../handlers.ts';
import type { Db } from '../store/db.ts';
import type { backupArgs } from './contract.ts';
import { Repository, listPoints } from './repository.ts';

const PROGRESS_MS = 200;

export function createBackupHandlers(d: { db: Db; dataDir: string; emit: EventListener }): HandlersFor<typeof backupArgs> {
  return {
    'backup:list': ({ repo }) => listPoints(Repository.open(repo)),
    'backup:take': async ({ image, repo, level, dryRun }) => {
      const { takeBackup, takenDoc } = await import('./take.ts');
      let last = 0;
      const r = await takeBackup({
        image,
        repo,
        level: level ?? null,
        since: null,
        compress: false,
        dryRun: dryRun ?? false,
        dataDir: d.dataDir,
        db: d.db,
        onProgress: (j) => {
          const now = Date.now();
          if (now - last < PROGRESS_MS && j.state === 'running') return;
          last = now;
          d.emit('backup:progress', { image, repo, current: j.current, total: j.total, rate: j.rate, etaSeconds: j.etaSeconds, state: j.state });
        },
      });
      return takenDoc(r);
    },
    'backup:restore': async ({ repo, id, to, format }) => {
      const { restoreBackup } = await import('./restore.ts');
      return restoreBackup({ repo, id, to, format: format ?? 'qcow2', force: false });
    },
    'backup:verify': async ({ repo, id }) => {
      const { verifyRepository } = await import('./verify.ts');
      return verifyRepository(Repository.open(repo), id);
    },
  };
}
