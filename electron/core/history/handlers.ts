// History: scans, jobs, bitmap operations, plans and backup activity (backups, restores, verifies,
// prunes), newest first, each through its one mapping to the wire.
import type { History } from '../store/history.ts';
import { toJobRecordInfo, type JobStore } from '../store/jobs.ts';
import { toOperationInfo, type Operations } from '../store/operations.ts';
import type { PlanStore } from '../store/plans.ts';
import type { HandlersFor } from '../handlers.ts';
import type { ActivityEntry, historyArgs } from './contract.ts';
import { planInfo } from '../plans/service-plans.ts';
import type { BackupActivityLog } from '../backup/activity.ts';

export interface HistoryDeps {
  history: History;
  jobStore: JobStore;
  operations: Operations;
  planStore: PlanStore;
  backupActivity: BackupActivityLog;
  /** settles once the plans a crash left unfinished are resolved (their outcome belongs in the list) */
  recovered: Promise<unknown>;
}

const DEFAULT_LIMIT = 100;

export function createHistoryHandlers({ history, jobStore, operations, planStore, backupActivity, recovered }: HistoryDeps): HandlersFor<typeof historyArgs> {
  return {
    'history:scans': ({ image, limit }) => history.scans(image, limit ?? DEFAULT_LIMIT),
    'history:jobs': ({ limit }) => jobStore.list(limit ?? DEFAULT_LIMIT).map(toJobRecordInfo),
    'history:operations': ({ limit }) => operations.list(limit ?? DEFAULT_LIMIT).map(toOperationInfo),
    'history:plans': async ({ limit }) => {
      await recovered;
      return planStore.list(limit ?? DEFAULT_LIMIT).map(planInfo);
    },
    'history:activity': async ({ limit }) => {
      await recovered;
      const n = limit ?? DEFAULT_LIMIT;
      const entries: ActivityEntry[] = [
        ...history.scans(undefined, n).map((scan) => ({ kind: 'scan' as const, at: scan.scannedAt, scan })),
        ...jobStore.list(n).map((r) => toJobRecordInfo(r)).map((job) => ({ kind: 'job' as const, at: job.createdAt, job })),
        ...operations.list(n).map((r) => toOperationInfo(r)).map((operation) => ({ kind: 'operation' as const, at: operation.createdAt, operation })),
        ...planStore.list(n).map((r) => planInfo(r)).map((plan) => ({ kind: 'plan' as const, at: plan.createdAt, plan })),
        ...backupActivity.list(n).map((backup) => ({ kind: 'backup' as const, at: backup.createdAt, backup })),
      ];
      // Newest first; on the same instant, by kind, then the later record first, for a stable order.
      return entries.sort((a, b) => b.at.localeCompare(a.at) || a.kind.localeCompare(b.kind) || recordId(b) - recordId(a));
    },
  };
}

function recordId(e: ActivityEntry): number {
  return e.kind === 'scan' ? e.scan.id : e.kind === 'job' ? e.job.id : e.kind === 'operation' ? e.operation.id : e.kind === 'plan' ? e.plan.id : e.backup.id;
}
