// Repair over the contract: the findings of a chain with the plan that repairs them and "changes
// since" every checkpoint before and after (repair:plan, writes nothing), and the same plan journaled
// and applied once the user confirmed it (repair:apply). The answer is strata repair --json's shape.
import * as v from 'valibot';
import { absPath, obj, type ChannelsOf } from '../schema.ts';
import type { RepairReport } from './report.ts';
import type { CheckpointView } from './plan.ts';

export type { RepairReport, CheckpointView };

const repairRequest = obj({
  image: absPath(),
  /** a candidate for a backing file that is missing at its recorded path (qemu-img rebase -u) */
  backing: v.optional(absPath()),
});

export const repairArgs = {
  'repair:plan': repairRequest,
  'repair:apply': repairRequest,
};

export type RepairChannels = ChannelsOf<
  typeof repairArgs,
  {
    /** findings, the plan with its exact tool invocations, before and after; changes nothing */
    'repair:plan': RepairReport;
    /** journals the plan and applies it (the user confirmed it); answers what was done */
    'repair:apply': RepairReport;
  }
>;
