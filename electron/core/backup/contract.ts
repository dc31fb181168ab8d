// Backups over the contract: a repository's points (backup:list, strata backups --json's rows), a
// backup taken (backup:take, strata backup --json's object; dryRun says what it would copy and writes
// nothing), a point restored to a new image (backup:restore) and the repository verified
// (backup:verify, strata verify --json's rows). While a backup runs, backup:progress follows its job,
// and backup:cancel stops it (the partial file and its new checkpoint removed, nothing listed).
import * as v from 'valibot';
import { absPath, id, int, obj, type ChannelsOf } from '../schema.ts';
import type { Consistency } from './repository.ts';
import type { Level } from './rules.ts';
import type { VerifyResult } from './verify.ts';
import type { RestoreResult } from './restore.ts';
import type { TakeResult } from './take.ts';
import type { PrunePlan } from './prune.ts';

export type { VerifyResult as BackupVerifyResult, RestoreResult as BackupRestoreResult, PrunePlan as BackupPrunePlan };
export type BackupLevel = Level;

/** One point of a repository, as strata backups --json lists it (oldest first). */
export interface BackupPoint {
  id: string;
  level: Level;
  parent: string | null;
  checkpoint: string | null;
  createdAt: string;
  /** absolute path of the point's qcow2 file */
  file: string;
  bytes: number;
  state: string;
  consistency: Consistency;
  /** when the backup was complete (finishedAt - createdAt: how long it took) */
  finishedAt: string;
  /** the disk data QEMU copied (bytes: the file's size in the repository) */
  dirtyBytes: number;
  /** disks restored from this point with a fresh checkpoint (restore --checkpoint), oldest first */
  restored: BackupRestoredDisk[];
}

/** A disk restored from a point with a fresh checkpoint: its next backup into the repository is incremental to the point. */
export interface BackupRestoredDisk {
  /** absolute path of the restored file */
  image: string;
  /** the checkpoint bitmap it was given (the point's own) */
  checkpoint: string;
  restoredAt: string;
}

/** strata backup --json's object (dryRun: true when nothing was written). */
export type BackupTaken = Omit<TakeResult, 'dryRun' | 'notes'> & { dryRun?: true };

/**
 * backup:cancel's answer, once the backup has stopped and been cleaned up: cancelled false when no
 * backup was running into the repository or it completed first (then it is listed as usual).
 */
export interface BackupCancelled {
  cancelled: boolean;
  /** the backup that was stopped (its id was never listed), null when none */
  id: string | null;
  /** what the clean-up removed, as the journal recorded it */
  note: string | null;
}

/** A checkpoint of a disk's chain that is the checkpoint of a backup in a repository Strata knows. */
export interface BackupCheckpoint {
  /** the bitmap's name in the chain */
  checkpoint: string;
  repo: string;
  /** the backup's id, e.g. inc-3 */
  id: string;
  level: Level;
  createdAt: string;
}

export type BackupActivityState = 'running' | 'ok' | 'failed' | 'cancelled' | 'damaged';

/** What became of one point in a backup, restore, verify or prune. */
export interface BackupActivityPoint {
  id: string;
  what: 'running' | 'taken' | 'failed' | 'cancelled' | 'restored' | 'verified' | 'damaged' | 'removed' | 'kept';
  /** why it was kept, what verify found, how large it was */
  note: string | null;
}

/** One backup, restore, verify or prune, as the activity history lists it. */
export interface BackupActivityInfo {
  /** the record's id among those of its action's journal (backups: backup_journal, others: backup_activity) */
  id: number;
  action: 'backup' | 'restore' | 'verify' | 'prune';
  repo: string;
  /** a backup: the disk backed up; a restore: the file written; else null */
  file: string | null;
  /** a backup's level, else null */
  level: Level | null;
  state: BackupActivityState;
  summary: string;
  points: BackupActivityPoint[];
  /** a backup's file size, a restore's bytes on disk, what a verify re-read, what a prune freed */
  bytes: number | null;
  /** why it failed, what a cancelled backup's clean-up removed */
  note: string | null;
  createdAt: string;
  finishedAt: string | null;
}

export interface BackupProgress {
  image: string;
  repo: string;
  current: number;
  total: number;
  /** bytes/s, null while not measurable */
  rate: number | null;
  etaSeconds: number | null;
  state: string;
}

/**
 * backup:prune-plan's answer: strata prune --json's plan, and for every point that stays, the points
 * it is restored from (itself, then its parents down to its full), all of them kept.
 */
export interface BackupPrunePreview extends PrunePlan {
  restorable: { id: string; from: string[] }[];
}

export interface BackupChanged {
  /** the repository's absolute folder */
  repo: string;
  why: 'pruned' | 'recovered';
}

const MAX_KEEP = 100_000;
const retention = () => ({ repo: absPath(), keepLast: int(0, MAX_KEEP), keepDaily: int(0, MAX_KEEP), keepWeekly: int(0, MAX_KEEP) });

const LEVEL_NAMES = ['full', 'inc', 'diff', 'copy'] as const satisfies readonly Level[];

export const backupArgs = {
  'backup:list': obj({ repo: absPath() }),
  'backup:take': obj({
    image: absPath(),
    repo: absPath(),
    /** default: inc when the repository has a usable checkpoint for this disk, else full */
    level: v.optional(v.picklist(LEVEL_NAMES, `expected one of ${LEVEL_NAMES.join(', ')}`)),
    /** say what the backup would copy, write nothing */
    dryRun: v.optional(v.boolean('expected true or false')),
    /** the job's rate limit in bytes/s (0: unlimited) */
    speed: v.optional(int(0, Number.MAX_SAFE_INTEGER)),
  }),
  /** stops the backup running into this repository (one at a time: the repository lock) */
  'backup:cancel': obj({ repo: absPath() }),
  'backup:restore': obj({
    repo: absPath(),
    id: id(),
    to: absPath(),
    format: v.optional(v.picklist(['qcow2', 'raw'] as const, 'expected qcow2 or raw')),
    /** a fresh checkpoint in the restored image, recorded in the repository (qcow2 only) */
    checkpoint: v.optional(v.boolean('expected true or false')),
  }),
  'backup:verify': obj({ repo: absPath(), id: v.optional(id()) }),
  /** the catalog's backups whose checkpoint is a bitmap in this image's chain (reads the chain's metadata only) */
  'backup:checkpoints': obj({ image: absPath() }),
  /** what a retention policy would remove (strata prune without --yes); writes nothing */
  'backup:prune-plan': obj(retention()),
  /** applies it: `remove` is the plan the user confirmed, refused when the repository changed since */
  'backup:prune': obj({ ...retention(), remove: v.pipe(v.array(id(), 'expected a list of backup ids'), v.maxLength(MAX_KEEP, `expected at most ${MAX_KEEP} ids`)) }),
};

export type BackupChannels = ChannelsOf<
  typeof backupArgs,
  {
    'backup:list': BackupPoint[];
    'backup:take': BackupTaken;
    'backup:cancel': BackupCancelled;
    'backup:restore': RestoreResult;
    'backup:verify': VerifyResult[];
    'backup:checkpoints': BackupCheckpoint[];
    'backup:prune-plan': BackupPrunePreview;
    'backup:prune': PrunePlan;
  }
>;

export interface BackupEvents {
  /** a running backup's job moved (at most ~5 a second) */
  'backup:progress': BackupProgress;
  /** a repository's points changed other than by a backup the view took: pruned, or a prune a crash left finished or rolled back */
  'backup:changed': BackupChanged;
}
