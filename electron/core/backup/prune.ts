// Retention: which points a policy removes (rules.ts decides, keeping every point a remaining one
// needs), shown as a plan first. Applying it is crash-safe by its order: the manifest without the
// removed points is written first (atomically), then their files are deleted; a crash in between
// leaves only unlisted files, which the next prune deletes (it deletes every backup-named file the
// manifest does not list, under the repository lock). The app journals it first (beforeWrite).
import fs from 'node:fs';
import path from 'node:path';
import { Repository, fsyncPath } from './repository.ts';
import { selectRetention, type RetentionPolicy } from './rules.ts';

export interface PrunePlan {
  applied: boolean;
  keep: { id: string; why: string[] }[];
  remove: { id: string; file: string; bytes: number }[];
  /** files in the repository named like backups that the manifest does not list */
  orphans: string[];
  freedBytes: number;
}

const BACKUP_FILE = /^(full|inc|diff|copy)-\d+\.qcow2$/;

export interface PruneHooks {
  /** applying: called under the repository lock with the plan, before the first write; may refuse by throwing */
  beforeWrite?: (plan: PrunePlan, repo: Repository) => void;
}

export function prune(dir: string, policy: RetentionPolicy, apply: boolean, hooks: PruneHooks = {}): PrunePlan {
  const repo = Repository.open(dir);
  if (apply) repo.lock();
  try {
    const sel = selectRetention(repo.points, policy);
    const gone = new Set(sel.remove);
    const remove = repo.manifest.backups.filter((b) => gone.has(b.id)).map((b) => ({ id: b.id, file: repo.fileOf(b), bytes: b.bytes }));
    const listed = new Set(repo.manifest.backups.map((b) => b.file));
    const orphans = fs.readdirSync(repo.dir).filter((n) => BACKUP_FILE.test(n) && !listed.has(n)).map((n) => path.join(repo.dir, n));
    const plan: PrunePlan = { applied: false, keep: sel.keep, remove, orphans, freedBytes: remove.reduce((n, r) => n + r.bytes, 0) };
    if (apply) hooks.beforeWrite?.(plan, repo);
    if (!apply || (remove.length === 0 && orphans.length === 0)) return plan;
    repo.manifest.backups = repo.manifest.backups.filter((b) => !gone.has(b.id));
    repo.save();
    for (const f of [...remove.map((r) => r.file), ...orphans]) fs.rmSync(f, { force: true });
    fsyncPath(repo.dir);
    return { ...plan, applied: true };
  } finally {
    repo.unlock();
  }
}
