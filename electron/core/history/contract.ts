// History: what Strata saw (scans) and did (jobs, bitmap operations, plans, backups and what was done
// with them), newest first.
import * as v from 'valibot';
import { absPath, limit, optionalObj, type ChannelsOf } from '../schema.ts';
import type { BitmapFlag, ChainHealth } from '../workspace/contract.ts';
import type { PlanInfo } from '../plans/contract.ts';
import type { BackupActivityInfo } from '../backup/contract.ts';

/** What changed in a chain between two scans, as a code with its facts (paths absolute, sizes bytes). */
export type Drift =
  | { code: 'layer-added' | 'layer-removed'; layer: string }
  | { code: 'backing-changed'; layer: string; from: string | null; to: string | null }
  | { code: 'allocation-changed'; layer: string; from: number; to: number }
  | { code: 'bitmap-added' | 'bitmap-removed'; layer: string; bitmap: string }
  | { code: 'bitmap-flags-changed'; layer: string; bitmap: string; from: BitmapFlag[]; to: BitmapFlag[] }
  | { code: 'bitmap-dirty-changed'; layer: string; bitmap: string; from: number; to: number };

export interface ScanRecord {
  id: number;
  image: string;
  scannedAt: string;
  layers: { path: string; allocatedBytes: number; bitmaps: { name: string; flags: BitmapFlag[]; dirtyBytes: number }[] }[];
  /** the first scan of this image: nothing to compare with */
  first: boolean;
  /** what changed against the previous scan of the same image */
  drift: Drift[];
  /** the same in plain words, for display */
  changes: string[];
  /** the chain's health at this scan (null for scans recorded before Strata kept it) */
  health: ChainHealth | null;
}

/** One line of QMP as it was on the wire: `out` sent by Strata, `in` received from QEMU. */
export interface QmpLogLine {
  dir: 'out' | 'in';
  line: string;
  at: string;
  /** an event's name (or `(protocol: …)` for a line that broke the protocol) */
  event?: string;
}

export interface JobRecordInfo {
  id: number;
  qemuId: string;
  connection: string;
  type: string;
  state: string;
  error: string | null;
  createdAt: string;
  finishedAt: string | null;
  events: { at: string; state: string; note: string | null }[];
  /** the QMP of this job from its connection's traffic log: commands sent for it, replies, its events */
  qmp: QmpLogLine[];
}

export interface OperationInfo {
  id: number;
  kind: string;
  target: string;
  summary: string;
  state: string;
  error: string | null;
  createdAt: string;
  finishedAt: string | null;
  /** the QMP exchanged, raw from the traffic log */
  log: QmpLogLine[];
}

/**
 * One line of the activity feed: what Strata saw or did, tagged with its kind, `at` when it began.
 * The record sits under its kind's name (operations and plans have a `kind` field of their own).
 */
export type ActivityEntry =
  | { kind: 'scan'; at: string; scan: ScanRecord }
  | { kind: 'job'; at: string; job: JobRecordInfo }
  | { kind: 'operation'; at: string; operation: OperationInfo }
  | { kind: 'plan'; at: string; plan: PlanInfo }
  | { kind: 'backup'; at: string; backup: BackupActivityInfo };

const recent = () => optionalObj({ limit: limit() });

export const historyArgs = {
  'history:scans': optionalObj({ image: v.optional(absPath()), limit: limit() }),
  'history:jobs': recent(),
  'history:operations': recent(),
  'history:plans': recent(),
  /** scans, jobs, bitmap operations, plans and backups (with restores, verifies, prunes) in one list, newest first (up to `limit` of each kind) */
  'history:activity': recent(),
};

export type HistoryChannels = ChannelsOf<
  typeof historyArgs,
  { 'history:scans': ScanRecord[]; 'history:jobs': JobRecordInfo[]; 'history:operations': OperationInfo[]; 'history:plans': PlanInfo[]; 'history:activity': ActivityEntry[] }
>;
