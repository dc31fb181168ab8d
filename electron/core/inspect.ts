// One read-only scan of a chain: the facts of every layer, every bitmap, every checkpoint.
import type { ChainReport, CheckpointReport, LayerInfo, BitmapFlag } from './contract.ts';
import { openChain, openPartialChain, type Chain, type Layer, type MissingBacking } from './qcow2/chain.ts';
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

/**
 * `live`: the layers a connected QEMU holds, as it sees them (keyed by path); the rest is read from disk.
 * `missing`: a backing file the chain names but that is not there (the chain stops above it).
 */
export function inspectOpenChain(chain: Chain, live?: ReadonlyMap<string, LiveLayerFacts>, missing: MissingBacking | null = null): ChainReport {
  const t0 = performance.now();
  const contents = new ChainContents(chain, live);
  const layers = contents.chain.layers.map((l) => layerInfo(contents, l));
  const checkpoints = checkpointReports(contents);
  return {
    image: chain.image,
    layers,
    checkpoints: missing ? checkpoints.map((c) => incomplete(c, missing)) : checkpoints,
    scannedAt: new Date().toISOString(),
    scanMs: Math.round((performance.now() - t0) * 100) / 100,
    ...(missing ? { missingBacking: { file: missing.file, expectedAt: missing.expectedAt, referencedBy: missing.referencedBy } } : {}),
  };
}

/**
 * A checkpoint of a chain whose lower layers cannot be read: what they hold (its own bitmap, writes
 * before it) is unknown, so it is never 'ok', whatever the readable layers say.
 */
function incomplete(c: CheckpointReport, m: MissingBacking): CheckpointReport {
  const why = `the chain is incomplete: the backing file ${m.expectedAt} (named by ${m.referencedBy}) is missing, so what the layers below hold cannot be read`;
  return { ...c, state: 'unknown', dirtyBytes: null, problems: [why, ...c.problems] };
}

/** The whole chain, or E_BACKING_MISSING (what `strata inspect` reports: scripts rely on it). */
export function inspect(image: string, live?: ReadonlyMap<string, LiveLayerFacts>): ChainReport {
  const chain = openChain(image);
  try {
    return inspectOpenChain(chain, live);
  } finally {
    chain.close();
  }
}

/** As much of the chain as can be read: a missing backing file is reported in `missingBacking`, not thrown. */
export function inspectPartial(image: string): ChainReport {
  const chain = openPartialChain(image);
  try {
    return inspectOpenChain(chain, undefined, chain.missingBacking);
  } finally {
    chain.close();
  }
}
