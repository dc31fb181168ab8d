// Opening a backing chain from its top image, the way QEMU resolves it from the headers:
// relative names against the referring image's folder, backing format from the header extension
// (probed by magic when absent), and typed errors for missing files, loops and non-file backings.
import path from 'node:path';
import { rawWarnings } from './raw-check.ts';
import { ImageFile } from './image-file.ts';
import { readHeader, isQcow2, type Qcow2Header } from './header.ts';
import { checkSnapshotTable } from './snapshots.ts';
import { readBitmapDirectory, bitmapsStale, forEachBitRun, type BitmapEntry } from './bitmaps.ts';
import { forEachAllocation, UNALLOCATED, type AllocKind } from './allocation.ts';
import { ExtentBuilder, type ExtentList } from '../extents.ts';
import { StrataError, TRUNCATED_ADVICE, unsupported } from '../errors.ts';

export const MAX_CHAIN_DEPTH = 1024;

export interface Layer {
  /** absolute path as QEMU would name it (not symlink-resolved) */
  path: string;
  format: 'qcow2' | 'raw';
  file: ImageFile;
  header: Qcow2Header | null;
  virtualSize: number;
  backingFile: string | null;
  backingFormat: string | null;
  bitmaps: BitmapEntry[];
  bitmapsStale: boolean;
  /** doubts that this is a disk at all (a raw "disk" that looks like a text file or an archive) */
  warnings: string[];
}

export interface Chain {
  image: string;
  /** top first */
  layers: Layer[];
  close(): void;
}

/** A backing string QEMU would hand to a protocol driver rather than open as a local file. */
function protocolOf(name: string): string | null {
  if (name.startsWith('json:')) return 'json';
  const colon = name.indexOf(':');
  const slash = name.indexOf('/');
  if (colon > 0 && (slash < 0 || colon < slash)) return name.slice(0, colon);
  return null;
}

export function resolveBacking(layerPath: string, backing: string): string {
  const proto = protocolOf(backing);
  if (proto === 'file') backing = backing.slice(5);
  else if (proto !== null) {
    throw new StrataError('E_BACKING_PROTOCOL', `${layerPath}: backing file '${backing}' uses the '${proto}' protocol, not a local file`, {
      file: layerPath,
    });
  }
  return path.isAbsolute(backing) ? path.normalize(backing) : path.resolve(path.dirname(layerPath), backing);
}

// Formats QEMU would probe by magic and we do not read: refuse them rather than misread them as raw.
const OTHER_FORMATS: [string, Buffer][] = [
  ['vmdk', Buffer.from('KDMV')],
  ['vhdx', Buffer.from('vhdxfile')],
  ['vpc (vhd)', Buffer.from('conectix')],
  ['qed', Buffer.from('QED\0', 'latin1')],
  ['luks', Buffer.from('LUKS\xba\xbe', 'latin1')],
  ['cloop', Buffer.from('#!/bin/sh\n#V2.0 Format')],
];

function probe(file: ImageFile): 'qcow2' | 'raw' {
  const head = file.size > 0 ? file.read(0, Math.min(file.size, 72), 'magic') : Buffer.alloc(0);
  if (isQcow2(head)) return 'qcow2';
  if (head.length >= 72 && head.readUInt32LE(64) === 0xbeda107f) throw unsupported(file.path, 'vdi images (only qcow2 and raw are read)');
  for (const [name, magic] of OTHER_FORMATS) {
    if (head.subarray(0, magic.length).equals(magic)) throw unsupported(file.path, `${name} images (only qcow2 and raw are read)`);
  }
  return 'raw';
}

export function openLayer(p: string, format: 'qcow2' | 'raw' | null): Layer {
  const file = ImageFile.open(p);
  try {
    const fmt = format ?? probe(file);
    if (fmt === 'raw') {
      // QEMU counts whole 512-byte sectors of a raw file; the tail reads as zeroes.
      const virtualSize = Math.ceil(file.size / 512) * 512;
      return { path: p, format: 'raw', file, header: null, virtualSize, backingFile: null, backingFormat: null, bitmaps: [], bitmapsStale: false, warnings: rawWarnings(file) };
    }
    const header = readHeader(file);
    checkSnapshotTable(file, header);
    const stale = bitmapsStale(header);
    // A stale directory is still parsed (so it can be shown), but never trusted for contents.
    const bitmaps = readBitmapDirectory(file, header);
    return {
      path: p,
      format: 'qcow2',
      file,
      header,
      virtualSize: header.virtualSize,
      backingFile: header.backingFile,
      backingFormat: header.backingFormat,
      bitmaps,
      bitmapsStale: stale,
      warnings: [],
    };
  } catch (e) {
    file.close();
    throw withTruncationAdvice(e, file.size);
  }
}

/**
 * A field found broken where the file has already ended was read as QEMU reads it (zeroes): the
 * file was cut off, so the error says what to do about that.
 */
function withTruncationAdvice(e: unknown, fileSize: number): unknown {
  if (!(e instanceof StrataError) || e.code !== 'E_CORRUPT' || e.offset === undefined || e.offset < fileSize || e.message.includes(TRUNCATED_ADVICE)) return e;
  return new StrataError('E_CORRUPT', `${e.message}; ${TRUNCATED_ADVICE}`, { file: e.file, offset: e.offset, cause: e });
}

/** A backing file the chain names but that is not there: what refers to it and where it was looked for. */
export interface MissingBacking {
  /** the backing string as stored in the referring layer's header */
  file: string;
  /** the absolute path QEMU would open (resolved against the referring layer's folder) */
  expectedAt: string;
  /** the layer whose header names it */
  referencedBy: string;
  /** the header's backing format, when it has one */
  backingFormat: string | null;
}

/** The layers that exist, top first, down to (not including) a missing backing file. */
export interface PartialChain extends Chain {
  missingBacking: MissingBacking | null;
}

function walkChain(image: string, stopAtMissing: boolean): PartialChain {
  const top = path.resolve(image);
  const layers: Layer[] = [];
  const seen = new Map<string, string>();
  const close = () => {
    for (const l of layers) l.file.close();
  };
  let missingBacking: MissingBacking | null = null;
  try {
    let current: string | null = top;
    let format: 'qcow2' | 'raw' | null = null;
    let referrer: Layer | null = null;
    while (current !== null) {
      if (layers.length >= MAX_CHAIN_DEPTH) throw new StrataError('E_CORRUPT', `${top}: backing chain deeper than ${MAX_CHAIN_DEPTH}`, { file: top });
      let layer: Layer;
      try {
        layer = openLayer(current, format);
      } catch (e) {
        if (referrer !== null && e instanceof StrataError && e.code === 'E_NOT_FOUND') {
          if (stopAtMissing) {
            missingBacking = { file: referrer.backingFile!, expectedAt: current, referencedBy: referrer.path, backingFormat: referrer.backingFormat };
            break;
          }
          throw new StrataError('E_BACKING_MISSING', `${referrer.path}: backing file ${current} does not exist`, { file: referrer.path, cause: e });
        }
        throw e;
      }
      // The same file under any name (symlink, hard link, ../) is a loop: compare device and inode.
      if (seen.has(layer.file.identity)) {
        layer.file.close();
        throw new StrataError('E_BACKING_LOOP', `${referrer?.path ?? current}: backing chain loops back to ${current}`, { file: referrer?.path ?? current });
      }
      seen.set(layer.file.identity, current);
      layers.push(layer);
      if (layer.backingFile === null) break;
      const bf = layer.backingFormat;
      if (bf !== null && bf !== 'qcow2' && bf !== 'raw') throw unsupported(layer.path, `backing format '${bf}'`);
      format = bf as 'qcow2' | 'raw' | null;
      referrer = layer;
      current = resolveBacking(layer.path, layer.backingFile);
    }
  } catch (e) {
    close();
    throw e;
  }
  return { image: top, layers, close, missingBacking };
}

/** The whole chain; a backing file that is not there is E_BACKING_MISSING naming the layer that refers to it. */
export function openChain(image: string): Chain {
  const { missingBacking: _none, ...chain } = walkChain(image, false);
  return chain;
}

/**
 * As much of the chain as exists: every layer down to a missing backing file, and which file that is.
 * Every other fault (corrupt layer, loop, protocol backing) still throws.
 */
export function openPartialChain(image: string): PartialChain {
  return walkChain(image, true);
}

export function withChain<T>(image: string, fn: (c: Chain) => T): T {
  const c = openChain(image);
  try {
    return fn(c);
  } finally {
    c.close();
  }
}

/** Runs of one layer: raw layers define every byte they hold. */
export function forEachLayerAllocation(layer: Layer, sink: (start: number, length: number, kind: AllocKind) => void): void {
  if (layer.header === null) {
    if (layer.virtualSize > 0) sink(0, layer.virtualSize, 1);
    return;
  }
  forEachAllocation(layer.file, layer.header, sink);
}

export function allocationExtents(layer: Layer): ExtentList {
  const b = new ExtentBuilder();
  forEachLayerAllocation(layer, (s, len, kind) => {
    if (kind !== UNALLOCATED) b.push(s, s + len);
  });
  return b.finish();
}

export function findBitmap(layer: Layer, name: string): BitmapEntry | undefined {
  return layer.bitmaps.find((b) => b.name === name);
}

/** A bitmap's dirty areas as byte extents, clipped to the virtual size. */
export function bitmapExtents(layer: Layer, bm: BitmapEntry): ExtentList {
  if (layer.header === null) throw new StrataError('E_NO_BITMAP', `${layer.path}: raw images hold no bitmaps`, { file: layer.path });
  const g = bm.granularity;
  const size = layer.virtualSize;
  const b = new ExtentBuilder();
  forEachBitRun(layer.file, layer.header, bm, (s, e) => b.push(s * g, Math.min(e * g, size)));
  return b.finish();
}
