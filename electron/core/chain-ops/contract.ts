// Chain operations that keep the checkpoints, over the contract: a snapshot (a new overlay with the
// checkpoint bitmaps in it) and a stream (the backing data pulled into the top, the removed layers'
// bitmaps carried). chain-op:plan writes nothing and answers the plan with "changes since" every
// checkpoint before and after; chain-op:apply journals it and runs it once the user confirmed it.
// An offline image is named by `image`; a running QEMU's disk by `connection` (the app's connection
// id) and `node` (the disk's top node): then the live plans (repair/snapshot-live.ts, stream-live.ts)
// run on that connection's own QMP client and job engine.
import * as v from 'valibot';
import { absPath, bitmapName, id, nodeName, obj, type ChannelsOf } from '../schema.ts';
import type { CheckpointView } from '../repair/plan.ts';

const offline = v.variant(
  'op',
  [
    obj({ op: v.literal('snapshot'), image: absPath(), newTop: absPath(), checkpoint: v.optional(bitmapName()) }),
    /** `base`: the layer that stays the top's backing; left out, the top becomes standalone */
    obj({ op: v.literal('stream'), image: absPath(), base: v.optional(absPath()) }),
  ],
  'expected snapshot or stream',
);
const live = v.variant(
  'op',
  [
    obj({ op: v.literal('snapshot'), connection: id(), node: nodeName(), newTop: absPath(), checkpoint: v.optional(bitmapName()) }),
    /** `base`: the file of the layer that stays the top's backing; left out, the top becomes standalone */
    obj({ op: v.literal('stream'), connection: id(), node: nodeName(), base: v.optional(absPath()) }),
  ],
  'expected snapshot or stream',
);
/** A request naming a connection or a node is the live form (so a refusal names the live fields). */
const chainOp = v.lazy((input: unknown) => (input && typeof input === 'object' && ('connection' in input || 'node' in input) ? live : offline));
export type OfflineChainOpRequest = v.InferOutput<typeof offline>;
export type LiveChainOpRequest = v.InferOutput<typeof live>;
export type ChainOpRequest = OfflineChainOpRequest | LiveChainOpRequest;

export interface ChainOpReport {
  op: ChainOpRequest['op'];
  /** the top layer's file (live: the file QEMU gives the node) */
  image: string;
  /** live: the connection and the disk's top node before, and after (a snapshot's new node); null offline */
  live: { connection: string; node: string; activeNode: string } | null;
  /** the chain's active image once the operation is done (a snapshot's new top) */
  active: string;
  summary: string;
  /** why it cannot be done now; nothing is written then */
  refused: string | null;
  /** bitmaps put into the (new) top: created there, or merged into the top's own */
  carried: { name: string; from: string[]; created: boolean }[];
  notCarried: { name: string; why: string }[];
  /** tool steps: their argument arrays; live steps: the exact QMP each sends (`qmp`) */
  steps: { label: string; commands: string[][]; qmp?: { execute: string; arguments: Record<string, unknown> }[] }[];
  before: CheckpointView[];
  after: CheckpointView[];
  applied: boolean;
  outcome: { id: number; state: string; resolution: string } | null;
  /** live: plans of this kind a killed Strata left on that QEMU, and what became of them */
  recovered?: string[];
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
