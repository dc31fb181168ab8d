// History: what Strata saw (scans) and did (jobs, bitmap operations, plans), newest first.
import * as v from 'valibot';
import { absPath, limit, optionalObj, type ChannelsOf } from '../schema.ts';
import type { BitmapFlag } from '../workspace/contract.ts';
import type { PlanInfo } from '../plans/contract.ts';

export interface ScanRecord {
  id: number;
  image: string;
  scannedAt: string;
  layers: { path: string; allocatedBytes: number; bitmaps: { name: string; flags: BitmapFlag[]; dirtyBytes: number }[] }[];
  /** what changed against the previous scan of the same image, in plain words */
  changes: string[];
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
  /** the QMP exchanged: -> sent, <- received */
  log: { dir: 'out' | 'in'; line: string; at: string }[];
}

const recent = () => optionalObj({ limit: limit() });

export const historyArgs = {
  'history:scans': optionalObj({ image: v.optional(absPath()), limit: limit() }),
  'history:jobs': recent(),
  'history:operations': recent(),
  'history:plans': recent(),
};

export type HistoryChannels = ChannelsOf<
  typeof historyArgs,
  { 'history:scans': ScanRecord[]; 'history:jobs': JobRecordInfo[]; 'history:operations': OperationInfo[]; 'history:plans': PlanInfo[] }
>;
