// Backups over the contract: a repository's points (backup:list, strata backups --json's rows), a
// backup taken (backup:take, strata backup --json's object; dryRun says what it would copy and writes
// nothing), a point restored to a new image (backup:restore) and the repository verified
// (backup:verify, strata verify --json's rows). While a backup runs, backup:progress follows its job.
import * as v from 'valibot';
import { absPath, id, obj, type ChannelsOf } from '../schema.ts';
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
  }),
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
    'backup:restore': RestoreResult;
    'backup:verify': VerifyResult[];
  }
>;

export interface BackupEvents {
  /** a running backup's job moved (at most ~5 a second) */
  'backup:progress': BackupProgress;
}
