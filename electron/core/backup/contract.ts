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

export type { VerifyResult as BackupVerifyResult, RestoreResult as BackupRestoreResult };
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
  }),
  'backup:verify': obj({ repo: absPath(), id: v.optional(id()) }),
};

export type BackupChannels = ChannelsOf<
  typeof backupArgs,
  {
    'backup:list': BackupPoint[];
    'backup:take': BackupTaken;
    'backup:cancel': BackupCancelled;
    'backup:restore': RestoreResult;
    'backup:verify': VerifyResult[];
  }
>;

export interface BackupEvents {
  /** a running backup's job moved (at most ~5 a second) */
  'backup:progress': BackupProgress;
}
