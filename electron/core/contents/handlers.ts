// Contents: a density strip or a list of extents of what the inspector draws, offline (cached per
// file) or from a live node (read over NBD).
import type { ConnectionManager } from '../connections/manager.ts';
import type { HandlersFor } from '../handlers.ts';
import type { contentsArgs, ContentSource } from './contract.ts';
import { ContentsCache, LiveContents, resolveSince, type Resolved } from './cache.ts';
import type { Holder } from '../connections/manager.ts';
import { openChain } from '../qcow2/chain.ts';
import { readLiveBitmap } from '../bitmaps/live-contents.ts';
import { density, slice } from '../extents.ts';
import { StrataError } from '../errors.ts';

export interface ContentsDeps {
  connections: ConnectionManager;
  runtimeDir: string;
}

/** The files of a chain, top first. */
function chainFiles(image: string): string[] {
  const chain = openChain(image);
  try {
    return chain.layers.map((l) => l.path);
  } finally {
    chain.close();
  }
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
  const live = new LiveContents<Resolved>();
  const heldLayers = new LiveContents<Holder[]>();
  const resolve = async (src: ContentSource): Promise<Resolved> => {
    if (src.kind === 'live-bitmap') {
      return live.get(`bitmap\0${src.connection}\0${src.node}\0${src.name}`, async () => {
        const s = connections.session(src.connection, src.node);
        const r = await readLiveBitmap(s.qmp, src.node, src.name, { runtimeDir, where: s.label });
        return { extents: r.extents, virtualSize: r.virtualSize };
      });
    }
    if (src.kind === 'since') {
      // Layers a connected QEMU holds are read as it sees them (as the chain view's checkpoints are).
      const held = await heldLayers.get(src.image, () => connections.holders(chainFiles(src.image)));
      if (held.length) {
        return live.get(`since\0${src.image}\0${src.checkpoint}`, async () => resolveSince(src.image, src.checkpoint, await connections.readHeld(held)));
      }
    }
    return cache.get(src);
  };
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
