// The checkpoints backup repositories expect of this disk: for each repository of the backup
// catalog (SQLite, read only) whose points were taken from this image or a layer of its chain, the
// checkpoint of its latest point with one is what its next incremental starts from. Where the chain
// no longer has it, or Strata cannot vouch for it, that next backup will be full: a finding per
// repository, saying why. Nothing in the chain can bring such a checkpoint back.
import path from 'node:path';
import type { Db } from '../store/db.ts';
import type { CheckpointView } from './plan.ts';

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

/** `layers`: the chain's files (a point taken from any of them counts); `views`: the checkpoints as the repair leaves them. */
export function backupExpectations(db: Db, layers: string[], views: CheckpointView[]): ExpectationFinding[] {
  const rows = db
    .prepare(
      `SELECT repo, id, checkpoint, source FROM backup_catalog c
       WHERE checkpoint IS NOT NULL AND state = 'ok'
         AND created_at = (SELECT MAX(created_at) FROM backup_catalog d WHERE d.repo = c.repo AND d.checkpoint IS NOT NULL AND d.state = 'ok')
       ORDER BY repo`,
    )
    .all() as { repo: string; id: string; checkpoint: string; source: string }[];
  const out: ExpectationFinding[] = [];
  for (const r of rows.filter((x) => layers.includes(x.source))) {
    const v = views.find((x) => x.name === r.checkpoint);
    if (v?.state === 'ok') continue;
    const why = !v || v.state === 'gone' ? `the chain no longer has checkpoint '${r.checkpoint}'` : `checkpoint '${r.checkpoint}' cannot be trusted (${v.problems.join('; ') || 'unknown'})`;
    out.push({
      code: BACKUP_CHECKPOINT_MISSING,
      layers: [r.source],
      bitmaps: [r.checkpoint],
      message: `${path.basename(r.source)}: the backup repository ${r.repo} expects checkpoint '${r.checkpoint}' (of its latest point ${r.id}), but ${why}`,
      repairable: false,
      problem: true,
      consequence: `the next backup into ${r.repo} will be full (an incremental from '${r.checkpoint}' could miss writes); a full backup gives it a new checkpoint`,
      repository: r.repo,
      backup: r.id,
    });
  }
  return out;
}
