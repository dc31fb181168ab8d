// Repair over the contract: the findings of a chain with the plan that repairs them and "changes
// since" every checkpoint before and after (repair:plan, writes nothing), and the same plan journaled
// and applied once the user confirmed it (repair:apply). The answer is strata repair --json's shape.
import * as v from 'valibot';
import { absPath, obj, type ChannelsOf } from '../schema.ts';
import type { RepairReport } from './report.ts';
import type { CheckpointView } from './plan.ts';
import type { BackingCheck, RebaseResult } from './locate-backing.ts';

export type { RepairReport, CheckpointView, BackingCheck, RebaseResult };

const repairRequest = obj({
  image: absPath(),
  /** a candidate for a backing file that is missing at its recorded path (qemu-img rebase -u) */
  backing: v.optional(absPath()),
});

export const repairArgs = {
  'repair:plan': repairRequest,
  'repair:apply': repairRequest,
  'repair:check-backing': obj({ image: absPath(), backing: absPath() }),
  /** `confirm: true` is the user's yes to a write to their image: without it nothing runs */
  'repair:rebase': obj({ image: absPath(), backing: absPath(), confirm: v.literal(true, 'expected true: the user confirmed the rebase') }),
};

export type RepairChannels = ChannelsOf<
  typeof repairArgs,
  {
    /** findings, the plan with its exact tool invocations, before and after; changes nothing */
    'repair:plan': RepairReport;
    /** journals the plan and applies it (the user confirmed it); answers what was done */
    'repair:apply': RepairReport;
    /** whether a file can be the chain's missing backing file, and the rebase that would point at it; writes nothing */
    'repair:check-backing': BackingCheck;
    /** points the layer at the file (qemu-img rebase -u), journaled; refused while the image is held */
    'repair:rebase': RebaseResult;
  }
>;
