// Bitmaps: changes to the dirty bitmaps (checkpoints) of an offline image or a live node, planned
// (what would be sent) and applied (journaled first).
import * as v from 'valibot';
import { absPath, bitmapName, id, int, nodeName, obj, type ChannelsOf } from '../schema.ts';

/** Where a bitmap change goes: an offline image (Strata's own daemon) or a node of a live connection. */
const bitmapTarget = v.variant(
  'kind',
  [obj({ kind: v.literal('image'), image: absPath() }), obj({ kind: v.literal('connection'), connection: id(), node: nodeName() })],
  'expected image or connection',
);
export type BitmapTarget = v.InferOutput<typeof bitmapTarget>;

const named = <const K extends string>(op: K) => obj({ op: v.literal(op), name: bitmapName() });
const bitmapOp = v.variant(
  'op',
  [
    obj({
      op: v.literal('add'),
      name: bitmapName(),
      granularity: v.optional(int(512, 2 ** 31)),
      persistent: v.optional(v.boolean('expected true or false'), true),
      disabled: v.optional(v.boolean('expected true or false'), false),
    }),
    named('remove'),
    named('enable'),
    named('disable'),
    named('clear'),
    /** a source's `where` is null (same node), a layer file, or a node name */
    obj({
      op: v.literal('merge'),
      target: bitmapName(),
      sources: v.pipe(
        v.array(obj({ where: v.nullish(bitmapName(), null), name: bitmapName() }), 'expected at least one source'),
        v.minLength(1, 'expected at least one source'),
      ),
    }),
  ],
  'expected add, remove, enable, disable, clear or merge',
);
export type BitmapOpSpec = v.InferOutput<typeof bitmapOp>;

/** A checkpoint the change alters: its state and size before and after (null: it does not exist then). */
export interface CheckpointEffect {
  name: string;
  before: { state: 'ok' | 'unknown'; dirtyBytes: number | null } | null;
  after: { state: 'ok' | 'unknown'; dirtyBytes: number | null } | null;
  /** the reasons the change brings (after it), in plain words */
  problems: string[];
}

export interface BitmapPlanInfo {
  summary: string;
  /** the exact QMP command that will be sent */
  qmp: unknown;
  /** what the change does to the checkpoints of `chain` (empty when no chain was named) */
  effects: CheckpointEffect[];
}

const change = () => obj({ target: bitmapTarget, op: bitmapOp });

export const bitmapArgs = {
  /** `chain`: the image (top of a chain) whose checkpoints the preview weighs the change against */
  'bitmap:plan': obj({ target: bitmapTarget, op: bitmapOp, chain: v.optional(absPath()) }),
  'bitmap:apply': change(),
};

export type BitmapChannels = ChannelsOf<
  typeof bitmapArgs,
  {
    /** what a change would send; changes nothing */
    'bitmap:plan': BitmapPlanInfo;
    /** runs a change the user confirmed; journaled before its first command */
    'bitmap:apply': BitmapPlanInfo & { operation: number };
  }
>;
