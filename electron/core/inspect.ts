// One read-only scan of a chain: the facts of every layer, every bitmap, every checkpoint.
import type { ChainReport, LayerInfo, BitmapFlag } from './contract.ts';
import { openChain, type Chain, type Layer } from './qcow2/chain.ts';
import type { BitmapEntry } from './qcow2/bitmaps.ts';
import { ChainContents, checkpointReports, isLive, type LiveLayerFacts } from './checkpoints.ts';
import { totalBytes } from './extents.ts';

export function bitmapFlags(bm: BitmapEntry): BitmapFlag[] {
  const f: BitmapFlag[] = [];
  if (bm.auto) f.push('auto');
  if (bm.inUse) f.push('in-use');
  return f;
}

function layerInfo(contents: ChainContents, layer: Layer): LayerInfo {
  const h = layer.header;
  return {
    path: layer.path,
    format: layer.format,
    virtualSize: layer.virtualSize,
    fileSize: layer.file.size,
    clusterSize: h ? h.clusterSize : null,
    qcow2Version: h ? h.version : null,
    backingFile: layer.backingFile,
    backingFormat: layer.backingFormat,
    allocatedBytes: totalBytes(contents.allocation(layer)),
    extendedL2: h ? h.extendedL2 : false,
    compressionType: h ? h.compressionType : null,
    bitmapsStale: layer.bitmapsStale,
    warnings: layer.warnings,
    bitmaps: layer.bitmaps.map((bm) => {
      const lb = isLive(layer) && layer.live.error === null ? layer.live.bitmaps.find((b) => b.name === bm.name) : undefined;
      const flags = bitmapFlags(bm);
      if (lb?.busy) flags.push('busy');
      if (lb && !lb.persistent) flags.push('transient');
      return {
        name: bm.name,
        granularity: bm.granularity,
        flags,
        // QEMU's own count where it will not hand the contents over
        dirtyBytes: lb && lb.extents === null ? lb.count : totalBytes(contents.bitmap(layer, bm)),
        index: bm.index,
      };
    }),
    ...(isLive(layer) ? { live: { holder: layer.live.holder, connection: layer.live.connection, error: layer.live.error } } : {}),
  };
}

/** `live`: the layers a connected QEMU holds, as it sees them (keyed by path); the rest is read from disk. */
export function inspectOpenChain(chain: Chain, live?: ReadonlyMap<string, LiveLayerFacts>): ChainReport {
  const t0 = performance.now();
  const contents = new ChainContents(chain, live);
  const layers = contents.chain.layers.map((l) => layerInfo(contents, l));
  const checkpoints = checkpointReports(contents);
  return {
    image: chain.image,
    layers,
    checkpoints,
    scannedAt: new Date().toISOString(),
    scanMs: Math.round((performance.now() - t0) * 100) / 100,
  };
}

export function inspect(image: string, live?: ReadonlyMap<string, LiveLayerFacts>): ChainReport {
  const chain = openChain(image);
  try {
    return inspectOpenChain(chain, live);
  } finally {
    chain.close();
  }
}
