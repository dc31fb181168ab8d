// Chain operations that keep the checkpoints, over the contract: a snapshot (a new overlay with the
// checkpoint bitmaps in it) and a stream (the backing data pulled into the top, the removed layers'
// bitmaps carried). chain-op:plan writes nothing and answers the plan with "changes since" every
// checkpoint before and after; chain-op:apply journals it and runs it once the user confirmed it.
// Offline images only (a running QEMU's disk: blockdev-snapshot / block-stream there is not built yet).
import * as v from 'valibot';
import { absPath, bitmapName, obj, type ChannelsOf } from '../schema.ts';
import type { CheckpointView } from '../repair/plan.ts';

const chainOp = v.variant(
  'op',
  [
    obj({ op: v.literal('snapshot'), image: absPath(), newTop: absPath(), checkpoint: v.optional(bitmapName()) }),
    /** `base`: the layer that stays the top's backing; left out, the top becomes standalone */
    obj({ op: v.literal('stream'), image: absPath(), base: v.optional(absPath()) }),
  ],
  'expected snapshot or stream',
);
export type ChainOpRequest = v.InferOutput<typeof chainOp>;

export interface ChainOpReport {
  op: ChainOpRequest['op'];
  image: string;
  /** the chain's active image once the operation is done (a snapshot's new top) */
  active: string;
  summary: string;
  /** why it cannot be done now; nothing is written then */
  refused: string | null;
  /** bitmaps put into the (new) top: created there, or merged into the top's own */
  carried: { name: string; from: string[]; created: boolean }[];
  notCarried: { name: string; why: string }[];
  steps: { label: string; commands: string[][] }[];
  before: CheckpointView[];
  after: CheckpointView[];
  applied: boolean;
  outcome: { id: number; state: string; resolution: string } | null;
}

export const chainOpArgs = {
  'chain-op:plan': chainOp,
  'chain-op:apply': chainOp,
};

export type ChainOpChannels = ChannelsOf<
  typeof chainOpArgs,
  {
    /** the plan with its exact tool invocations, before and after; changes nothing */
    'chain-op:plan': ChainOpReport;
    /** journals the plan and runs it (the user confirmed it); answers what was done */
    'chain-op:apply': ChainOpReport;
  }
>;
