// History: scans, jobs, bitmap operations and plans, newest first, each through its one mapping to
// the wire.
import type { History } from '../store/history.ts';
import { toJobRecordInfo, type JobStore } from '../store/jobs.ts';
import { toOperationInfo, type Operations } from '../store/operations.ts';
import type { PlanStore } from '../store/plans.ts';
import type { HandlersFor } from '../handlers.ts';
import type { historyArgs } from './contract.ts';
import { planInfo } from '../plans/service-plans.ts';

export interface HistoryDeps {
  history: History;
  jobStore: JobStore;
  operations: Operations;
  planStore: PlanStore;
  /** settles once the plans a crash left unfinished are resolved (their outcome belongs in the list) */
  recovered: Promise<unknown>;
}

const DEFAULT_LIMIT = 100;

export function createHistoryHandlers({ history, jobStore, operations, planStore, recovered }: HistoryDeps): HandlersFor<typeof historyArgs> {
  return {
    'history:scans': ({ image, limit }) => history.scans(image, limit ?? DEFAULT_LIMIT),
    'history:jobs': ({ limit }) => jobStore.list(limit ?? DEFAULT_LIMIT).map(toJobRecordInfo),
    'history:operations': ({ limit }) => operations.list(limit ?? DEFAULT_LIMIT).map(toOperationInfo),
    'history:plans': async ({ limit }) => {
      await recovered;
      return planStore.list(limit ?? DEFAULT_LIMIT).map(planInfo);
    },
  };
}
