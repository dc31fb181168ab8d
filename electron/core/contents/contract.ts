// Contents: what the inspector draws (a bitmap, a layer's allocation, changes since a checkpoint, a
// live node's bitmap), as a density strip or a list of extents.
import * as v from 'valibot';
import { absPath, bitmapName, id, int, nodeName, obj, type ChannelsOf } from '../schema.ts';

export const MAX_BUCKETS = 65536;
export const MAX_EXTENTS = 100_000;

export interface Extent {
  start: number;
  length: number;
}

const contentSource = v.variant(
  'kind',
  [
    obj({ kind: v.literal('bitmap'), layer: absPath(), name: bitmapName() }),
    obj({ kind: v.literal('allocation'), layer: absPath() }),
    obj({ kind: v.literal('since'), image: absPath(), checkpoint: bitmapName() }),
    /** a bitmap of a live connection's node, read over NBD (exported, read, and cleaned up) */
    obj({ kind: v.literal('live-bitmap'), connection: id(), node: nodeName(), name: bitmapName() }),
  ],
  'expected bitmap, allocation, since or live-bitmap',
);

/** What to draw in the inspector: one bitmap, the allocation of one layer, or changes since a checkpoint. */
export type ContentSource = v.InferOutput<typeof contentSource>;

const position = () => int(0, Number.MAX_SAFE_INTEGER);
const span = { source: contentSource, start: position(), end: position() };
const endNotBeforeStart = <T extends { start: number; end: number }>() =>
  v.forward<T, v.CheckIssue<T>, ['end']>(
    v.check((a) => a.end >= a.start, 'must not be before start'),
    ['end'] as never,
  );
const densityRequest = obj({ ...span, buckets: int(1, MAX_BUCKETS) });
const extentsRequest = obj({ ...span, limit: int(1, MAX_EXTENTS) });

export const contentsArgs = {
  'contents:density': v.pipe(densityRequest, endNotBeforeStart<v.InferOutput<typeof densityRequest>>()),
  'contents:extents': v.pipe(extentsRequest, endNotBeforeStart<v.InferOutput<typeof extentsRequest>>()),
};

export type DensityRequest = v.InferOutput<(typeof contentsArgs)['contents:density']>;
export type ExtentsRequest = v.InferOutput<(typeof contentsArgs)['contents:extents']>;

export interface DensityResult {
  start: number;
  end: number;
  bucketSize: number;
  /** bytes marked in each bucket (0..bucketSize) */
  marked: number[];
  totalMarked: number;
}

export interface ExtentsResult {
  extents: Extent[];
  truncated: boolean;
}

export type ContentsChannels = ChannelsOf<typeof contentsArgs, { 'contents:density': DensityResult; 'contents:extents': ExtentsResult }>;
