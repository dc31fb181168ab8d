// Resolving an inspector ContentSource to extents, with a small cache keyed by file identity
// (path, size, mtime) so zooming and hovering do not re-read a bitmap, bounded by extent count.
import fs from 'node:fs';
import type { ContentSource } from '../contract.ts';
import { openLayer, openChain, bitmapExtents, allocationExtents } from '../qcow2/chain.ts';
import { ChainContents, since, type LiveLayerFacts } from '../checkpoints.ts';
import type { ExtentList } from '../extents.ts';
import { StrataError } from '../errors.ts';

export interface Resolved {
  extents: ExtentList;
  virtualSize: number;
}

function stamp(p: string): string {
  try {
    const st = fs.statSync(p);
    return `${st.size}:${st.mtimeMs}`;
  } catch {
    return 'missing';
  }
}

export function resolveSource(src: ContentSource): Resolved {
  switch (src.kind) {
    case 'bitmap': {
      const layer = openLayer(src.layer, null);
      try {
        const bm = layer.bitmaps.find((b) => b.name === src.name);
        if (!bm) throw new StrataError('E_NO_BITMAP', `${src.layer}: no bitmap named '${src.name}'`, { file: src.layer });
        return { extents: bitmapExtents(layer, bm), virtualSize: layer.virtualSize };
      } finally {
        layer.file.close();
      }
    }
    case 'allocation': {
      const layer = openLayer(src.layer, null);
      try {
        return { extents: allocationExtents(layer), virtualSize: layer.virtualSize };
      } finally {
        layer.file.close();
      }
    }
    case 'since':
      return resolveSince(src.image, src.checkpoint);
    case 'live-bitmap':
      throw new StrataError('E_BAD_INPUT', 'live bitmaps are read through the connection (LiveContents), not from files');
    default:
      throw new StrataError('E_BAD_INPUT', `unknown content source ${JSON.stringify(src)}`);
  }
}

/** Changes since `checkpoint`, from the files, or with `live` facts for the layers a QEMU holds. */
export function resolveSince(image: string, checkpoint: string, live?: ReadonlyMap<string, LiveLayerFacts>): Resolved {
  const chain = openChain(image);
  try {
    const r = since(new ChainContents(chain, live), checkpoint);
    if (!r.extents) {
      throw new StrataError('E_CHECKPOINT_UNKNOWN', `changes since '${checkpoint}' cannot be known: ${r.problems.join('; ')}`, { file: image });
    }
    return { extents: r.extents, virtualSize: chain.layers[0].virtualSize };
  } finally {
    chain.close();
  }
}

/**
 * What a live QEMU holds changes while it runs, and every read of it exports bitmaps over NBD: one
 * read serves the zooming and hovering of the next couple of seconds, then it is read again.
 */
export class LiveContents<T> {
  private entries = new Map<string, { at: number; value: Promise<T> }>();
  constructor(private ttlMs = 2000) {}

  get(key: string, read: () => Promise<T>): Promise<T> {
    const hit = this.entries.get(key);
    if (hit && Date.now() - hit.at < this.ttlMs) return hit.value;
    const value = read();
    this.entries.set(key, { at: Date.now(), value });
    value.catch(() => this.entries.delete(key));
    for (const [k, e] of this.entries) if (Date.now() - e.at >= this.ttlMs) this.entries.delete(k);
    return value;
  }
}

export class ContentsCache {
  private entries = new Map<string, Resolved>();
  private held = 0;
  constructor(private maxExtents = 8_000_000) {}

  get(src: Exclude<ContentSource, { kind: 'live-bitmap' }>): Resolved {
    const files = src.kind === 'since' ? [src.image] : [src.layer];
    // A 'since' answer depends on every layer; the chain is re-read when the top changes, and the
    // key also carries the checkpoint name. Lower layers are read-only while they are backings.
    const key = JSON.stringify(src) + files.map(stamp).join('|');
    const hit = this.entries.get(key);
    if (hit) {
      this.entries.delete(key);
      this.entries.set(key, hit);
      return hit;
    }
    const r = resolveSource(src);
    this.entries.set(key, r);
    this.held += r.extents.count;
    for (const [k, v] of this.entries) {
      if (this.held <= this.maxExtents || k === key) break;
      this.entries.delete(k);
      this.held -= v.extents.count;
    }
    return r;
  }
}
