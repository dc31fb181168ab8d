// Contents: a density strip or a list of extents of what the inspector draws, offline (cached per
// file) or from a live node (read over NBD).
import type { ConnectionManager } from '../connections/manager.ts';
import type { HandlersFor } from '../handlers.ts';
import type { contentsArgs, ContentSource } from './contract.ts';
import { ContentsCache, LiveContents, type Resolved } from './cache.ts';
import { readLiveBitmap } from '../bitmaps/live-contents.ts';
import { density, slice } from '../extents.ts';
import { StrataError } from '../errors.ts';

export interface ContentsDeps {
  connections: ConnectionManager;
  runtimeDir: string;
}

/** The requested range within the image: `end` is clipped to its size. */
function clip(start: number, end: number, size: number): [number, number] {
  const e = Math.min(end, size);
  // Valid as sent (the schema checked), but the image is smaller than `start`.
  if (e < start) throw new StrataError('E_BAD_INPUT', 'end: must not be before start');
  return [start, e];
}

export function createContentsHandlers({ connections, runtimeDir }: ContentsDeps): HandlersFor<typeof contentsArgs> {
  const cache = new ContentsCache();
  const live = new LiveContents(async (connection, node, name) => {
    const s = connections.session(connection, node);
    const r = await readLiveBitmap(s.qmp, node, name, { runtimeDir, where: s.label });
    return { extents: r.extents, virtualSize: r.virtualSize };
  });
  const resolve = (src: ContentSource): Resolved | Promise<Resolved> => (src.kind === 'live-bitmap' ? live.get(src) : cache.get(src));
  return {
    'contents:density': async (a) => {
      const r = await resolve(a.source);
      const [start, end] = clip(a.start, a.end, r.virtualSize);
      const d = density(r.extents, start, end, a.buckets);
      return { start, end, bucketSize: d.bucketSize, marked: d.marked, totalMarked: d.totalMarked };
    },
    'contents:extents': async (a) => {
      const r = await resolve(a.source);
      const [start, end] = clip(a.start, a.end, r.virtualSize);
      return slice(r.extents, start, end, a.limit);
    },
  };
}
