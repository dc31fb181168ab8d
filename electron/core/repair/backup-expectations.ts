// The checkpoints backup repositories expect of this disk: for each repository of the backup
// catalog (SQLite, read only) whose points were taken from this image or a layer of its chain, the
// checkpoint of its latest point with one is what its next incremental starts from (for a disk
// restored from it with a fresh checkpoint, the restored point's until the disk is backed up again:
// backup_restored, the manifest's restored list mirrored). Where the chain
// no longer has it, or Strata cannot vouch for it, that next backup will be full: a finding per
// repository, saying why. Nothing in the chain can bring such a checkpoint back.
import path from 'node:path';
import type { Db } from '../store/db.ts';
import type { CheckpointView } from './plan.ts';
import { pointsOfDisk, type Level } from '../backup/rules.ts';

export const BACKUP_CHECKPOINT_MISSING = 'backup-checkpoint-missing';

export interface ExpectationFinding {
  code: typeof BACKUP_CHECKPOINT_MISSING;
  layers: string[];
  bitmaps: string[];
  message: string;
  repairable: false;
  problem: true;
  consequence: string;
  /** the repository and its point */
  repository: string;
  backup: string;
}

/** `layers`: the chain's files, top first (a point taken from any of them counts); `views`: the checkpoints as the repair leaves them. */
export function backupExpectations(db: Db, layers: string[], views: CheckpointView[]): ExpectationFinding[] {
  const points = (db
    .prepare(`SELECT repo, id, level, parent, checkpoint, source, created_at FROM backup_catalog WHERE state = 'ok' ORDER BY created_at, id`)
    .all() as { repo: string; id: string; level: Level; parent: string | null; checkpoint: string | null; source: string; created_at: string }[])
    .map((r) => ({ repo: r.repo, id: r.id, level: r.level, parent: r.parent, checkpoint: r.checkpoint, source: r.source, createdAt: r.created_at }));
  const restored = (db.prepare('SELECT repo, image, id, checkpoint, restored_at FROM backup_restored ORDER BY restored_at, image').all() as { repo: string; image: string; id: string; checkpoint: string; restored_at: string }[])
    .map((r) => ({ repo: r.repo, image: r.image, id: r.id, checkpoint: r.checkpoint, restoredAt: r.restored_at }));
  const out: ExpectationFinding[] = [];
  for (const repo of [...new Set(points.map((p) => p.repo))].sort()) {
    const ofRepo = points.filter((p) => p.repo === repo);
    const records = restored.filter((r) => r.repo === repo);
    // This chain as the repository knows it: a disk restored from it (the topmost such layer), else
    // a disk it backed up, not counting the backups of disks restored from it (their own lineage).
    const restoredHere = layers.find((l) => records.some((r) => r.image === l));
    const disk = restoredHere ?? layers.find((l) => ofRepo.some((p) => p.source === l) && !records.some((r) => r.image === l));
    if (!disk) continue;
    const latest = pointsOfDisk(ofRepo, records, disk).filter((p) => p.checkpoint).pop();
    if (!latest?.checkpoint) continue;
    const v = views.find((x) => x.name === latest.checkpoint);
    if (v?.state === 'ok') continue;
    const record = restoredHere ? records.filter((r) => r.image === disk).pop() : undefined;
    const fromRestore = record && record.id === latest.id;
    const holder = fromRestore || !latest.source || !layers.includes(latest.source) ? disk : latest.source;
    const why = !v || v.state === 'gone' ? `the chain no longer has checkpoint '${latest.checkpoint}'` : `checkpoint '${latest.checkpoint}' cannot be trusted (${v.problems.join('; ') || 'unknown'})`;
    const whose = fromRestore ? `(it was restored from point ${latest.id} with that checkpoint)` : `(of its latest point ${latest.id})`;
    out.push({
      code: BACKUP_CHECKPOINT_MISSING,
      layers: [holder],
      bitmaps: [latest.checkpoint],
      message: `${path.basename(holder)}: the backup repository ${repo} expects checkpoint '${latest.checkpoint}' ${whose}, but ${why}`,
      repairable: false,
      problem: true,
      consequence: `the next backup into ${repo} will be full (an incremental from '${latest.checkpoint}' could miss writes); a full backup gives it a new checkpoint`,
      repository: repo,
      backup: latest.id,
    });
  }
  return out;
}
