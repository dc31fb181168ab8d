// Backups, per image: the repository folder the user chose (remembered per image in localStorage),
// its points oldest first (backup:list), a backup taken after a dry run said what it copies
// (backup:take), a running backup cancelled (backup:cancel), a point restored to a new file
// (backup:restore), the repository verified (backup:verify), and its retention: the policy (kept per
// repository in localStorage), the prune plan (backup:prune-plan) and the prune the user confirmed
// (backup:prune). A running backup's progress comes from backup:progress (event-bridge.ts). The
// repository's backups that failed or were cancelled, and its verifies, come from the activity
// history (history:activity), read again with the points, for the timeline.
import { defineStore } from 'pinia';
import { reactive } from 'vue';
import type { BackupActivityInfo, BackupCheckpoint, BackupPrunePlan, BackupPrunePreview, BackupCancelled, BackupLevel, BackupPoint, BackupProgress, BackupTaken, BackupVerifyResult, BackupRestoreResult } from '../../../electron/core/contract';
import { call } from '../api/client';
import { ApiError } from '../api/api-error';
import { useChainsStore } from './chains';

const KEY = 'strata.backups.repo:';
const RETENTION_KEY = 'strata.backups.retention:';

export type BackupBusy = 'listing' | 'planning' | 'taking' | 'restoring' | 'verifying' | 'pruning' | null;

export interface Retention {
  keepLast: number;
  keepDaily: number;
  keepWeekly: number;
}

/** how far back the activity history is read for a repository's failed backups and verifies */
const ACTIVITY_LIMIT = 1000;

const DEFAULT_RETENTION: Retention = { keepLast: 7, keepDaily: 0, keepWeekly: 0 };

function readRetention(repo: string): Retention {
  try {
    const r = JSON.parse(localStorage.getItem(RETENTION_KEY + repo) ?? 'null');
    const n = (x: unknown) => (Number.isSafeInteger(x) && (x as number) >= 0 ? (x as number) : null);
    if (r && n(r.keepLast) !== null && n(r.keepDaily) !== null && n(r.keepWeekly) !== null) return { keepLast: r.keepLast, keepDaily: r.keepDaily, keepWeekly: r.keepWeekly };
  } catch {
    /* none saved, or unreadable: the default */
  }
  return { ...DEFAULT_RETENTION };
}

export const useBackupsStore = defineStore('backups', () => {
  const repos = reactive<Record<string, string>>({});
  const points = reactive<Record<string, BackupPoint[]>>({});
  const errors = reactive<Record<string, ApiError | null>>({});
  const busy = reactive<Record<string, BackupBusy>>({});
  const progress = reactive<Record<string, BackupProgress | null>>({});
  const lastTaken = reactive<Record<string, BackupTaken | null>>({});
  const lastRestore = reactive<Record<string, BackupRestoreResult | null>>({});
  const verified = reactive<Record<string, BackupVerifyResult[] | null>>({});
  /** the last backup stopped by Cancel, with what its clean-up removed */
  const lastCancelled = reactive<Record<string, BackupCancelled | null>>({});
  /** the prune plan last shown, and the last prune applied */
  const prunePlan = reactive<Record<string, BackupPrunePreview | null>>({});
  const lastPrune = reactive<Record<string, BackupPrunePlan | null>>({});
  /** per image: the known repositories' backups whose checkpoint is in its chain (for the chain view) */
  const checkpointBackups = reactive<Record<string, BackupCheckpoint[]>>({});
  /** per image: the activity history's backups, restores, verifies and prunes (of every repository: lib/backup-timeline.ts keeps the image's) */
  const activity = reactive<Record<string, BackupActivityInfo[]>>({});
  /** Cancel was pressed and the core has not answered yet */
  const cancelling = reactive<Record<string, boolean>>({});

  function repoOf(image: string): string {
    if (repos[image] === undefined) {
      let saved = '';
      try {
        saved = localStorage.getItem(KEY + image) ?? '';
      } catch {
        /* no storage: start empty */
      }
      repos[image] = saved;
    }
    return repos[image];
  }

  function setRepo(image: string, repo: string): void {
    repos[image] = repo;
    try {
      localStorage.setItem(KEY + image, repo);
    } catch {
      /* not remembered, still used */
    }
    points[image] = [];
    activity[image] = [];
    verified[image] = null;
    lastTaken[image] = null;
    prunePlan[image] = null;
    lastPrune[image] = null;
  }

  /** The retention policy of the image's repository (saved per repository folder). */
  function retentionOf(image: string): Retention {
    return readRetention(repoOf(image));
  }

  function setRetention(image: string, r: Retention): void {
    try {
      localStorage.setItem(RETENTION_KEY + repoOf(image), JSON.stringify(r));
    } catch {
      /* not remembered, still used */
    }
  }

  /** What the policy would remove, and how every point that stays is restored; writes nothing. */
  async function planPrune(image: string, r: Retention): Promise<void> {
    setRetention(image, r);
    lastPrune[image] = null;
    prunePlan[image] = await run(image, 'pruning', () => call('backup:prune-plan', { repo: repoOf(image), ...r }));
  }

  /** Applies the plan shown (the core refuses it if the repository changed since). */
  async function prune(image: string, r: Retention): Promise<BackupPrunePlan | null> {
    const plan = prunePlan[image];
    if (!plan) return null;
    const done = await run(image, 'pruning', () => call('backup:prune', { repo: repoOf(image), ...r, remove: plan.remove.map((x) => x.id) }));
    if (done) {
      prunePlan[image] = null;
      lastPrune[image] = done;
      verified[image] = null;
      await list(image);
      void refreshMarkers();
    }
    return done;
  }

  /**
   * The chain view's checkpoint-to-backup markers of every image shown, read again: a prune removes
   * points of a repository whose checkpoints may mark any image's chain, not only this image's.
   */
  async function refreshMarkers(): Promise<void> {
    await Promise.all(Object.keys(checkpointBackups).map((image) => loadCheckpoints(image)));
  }

  /** backup:changed: a repository's points changed (a prune, here or in another window, or one a crash left finished). */
  async function onRepositoryChanged(repo: string): Promise<void> {
    const listed = Object.keys(points).filter((image) => repos[image] === repo && busy[image] !== 'pruning');
    await Promise.all([refreshMarkers(), ...listed.map((image) => list(image))]);
  }

  async function run<T>(image: string, what: Exclude<BackupBusy, null>, fn: () => Promise<T>): Promise<T | null> {
    busy[image] = what;
    errors[image] = null;
    try {
      return await fn();
    } catch (e) {
      errors[image] = ApiError.from(e);
      return null;
    } finally {
      busy[image] = null;
    }
  }

  async function list(image: string): Promise<void> {
    const repo = repoOf(image);
    if (!repo) return;
    await run(image, 'listing', async () => {
      try {
        points[image] = await call('backup:list', { repo });
      } catch (e) {
        // A folder that is not a repository yet becomes one at the first backup.
        if (ApiError.from(e).code === 'E_NOT_FOUND') points[image] = [];
        else throw e;
      }
    });
    await loadActivity(image);
  }

  /** The repository's records in the activity history; unreadable, the timeline goes without them. */
  async function loadActivity(image: string): Promise<void> {
    try {
      const feed = await call('history:activity', { limit: ACTIVITY_LIMIT });
      activity[image] = feed.flatMap((e) => (e.kind === 'backup' ? [e.backup] : []));
    } catch {
      activity[image] = [];
    }
  }

  /** what a backup at this level would copy; writes nothing */
  function plan(image: string, level: BackupLevel | undefined): Promise<BackupTaken | null> {
    return run(image, 'planning', () => call('backup:take', { image, repo: repoOf(image), level, dryRun: true }));
  }

  /** speed: the job's rate limit in bytes/s (undefined: unlimited) */
  async function take(image: string, level: BackupLevel | undefined, speed?: number): Promise<BackupTaken | null> {
    progress[image] = null;
    lastCancelled[image] = null;
    lastTaken[image] = null;
    const r = await run(image, 'taking', () => call('backup:take', { image, repo: repoOf(image), level, ...(speed ? { speed } : {}) }));
    progress[image] = null;
    // A backup stopped by Cancel ends in an error that is not one: the cancel's answer says what happened.
    if (!r && cancelling[image]) errors[image] = null;
    if (r) {
      lastTaken[image] = r;
      verified[image] = null;
      prunePlan[image] = null;
      await list(image);
      // The new checkpoint bitmap shows in the chain view.
      void useChainsStore().inspect(image);
    }
    return r;
  }

  /** Which checkpoints of the image's chain are backups' checkpoints; a failure only leaves the markers out. */
  async function loadCheckpoints(image: string): Promise<void> {
    try {
      checkpointBackups[image] = await call('backup:checkpoints', { image });
    } catch {
      checkpointBackups[image] = [];
    }
  }

  async function cancel(image: string): Promise<void> {
    if (busy[image] !== 'taking' || cancelling[image]) return;
    cancelling[image] = true;
    try {
      const r = await call('backup:cancel', { repo: repoOf(image) });
      if (r.cancelled) {
        lastCancelled[image] = r;
        errors[image] = null;
      }
    } catch (e) {
      errors[image] = ApiError.from(e);
    } finally {
      cancelling[image] = false;
    }
    await list(image);
  }

  /** `checkpoint`: a fresh checkpoint in the restored image (qcow2), so its next backup is incremental to `id` */
  async function restore(image: string, id: string, to: string, format: 'qcow2' | 'raw', checkpoint = false): Promise<BackupRestoreResult | null> {
    const r = await run(image, 'restoring', () => call('backup:restore', { repo: repoOf(image), id, to, format, ...(checkpoint ? { checkpoint: true } : {}) }));
    if (r) lastRestore[image] = r;
    // A fresh checkpoint is recorded with the point (its details say where it was restored to): list again.
    if (r?.checkpoint) await list(image);
    else await loadActivity(image);
    return r;
  }

  /** Every point, or the one named. */
  async function verify(image: string, id?: string): Promise<void> {
    const r = await run(image, 'verifying', () => call('backup:verify', { repo: repoOf(image), ...(id ? { id } : {}) }));
    if (r) verified[image] = r;
    await loadActivity(image);
  }

  function onProgress(p: BackupProgress): void {
    if (busy[p.image] === 'taking') progress[p.image] = p;
  }

  return { repos, points, activity, errors, busy, progress, lastTaken, lastRestore, verified, lastCancelled, cancelling, prunePlan, lastPrune, checkpointBackups, loadCheckpoints, refreshMarkers, onRepositoryChanged, repoOf, setRepo, retentionOf, list, plan, take, cancel, restore, verify, planPrune, prune, onProgress };
});
