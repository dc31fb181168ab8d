// Workspace and chain: the app itself, the images the user keeps, reading a chain, the demo, the
// file picker. Types and argument schemas only; the renderer imports the types (through ../contract).
import { absPath, noArg, obj, type ChannelsOf } from '../schema.ts';
import type { ScanRecord } from '../history/contract.ts';

/**
 * 'auto' = recording, 'in-use' = inconsistent unless a live QEMU holds the image. On a layer read live
 * (LayerInfo.live) they are that QEMU's states: 'in-use' = inconsistent, and two more: 'busy' (a job
 * or an export uses it) and 'transient' (not persistent: gone when that QEMU stops).
 */
export type BitmapFlag = 'in-use' | 'auto' | 'busy' | 'transient';

export interface BitmapInfo {
  name: string;
  granularity: number;
  flags: BitmapFlag[];
  dirtyBytes: number;
  /** creation order within the layer: the bitmap directory's position (see checkpoints.ts for the one exception), or QEMU's live order */
  index: number;
}

export interface LayerInfo {
  path: string;
  format: 'qcow2' | 'raw';
  virtualSize: number;
  fileSize: number;
  clusterSize: number | null;
  qcow2Version: number | null;
  backingFile: string | null;
  backingFormat: string | null;
  allocatedBytes: number;
  extendedL2: boolean;
  compressionType: 'zlib' | 'zstd' | null;
  /** autoclear bit 0 clear although a bitmap directory exists: QEMU would discard the bitmaps */
  bitmapsStale: boolean;
  /** doubts that this file is a disk at all (a raw "disk" that starts like text or an archive) */
  warnings: string[];
  bitmaps: BitmapInfo[];
  /**
   * Present when a connected QEMU holds this layer open: its bitmaps and allocation are that QEMU's,
   * read live over QMP and NBD. `error` says why they could not be, and then they are the file's.
   */
  live?: { holder: string; connection: string; error: string | null };
}

export type CheckpointState = 'ok' | 'unknown';

export interface CheckpointReport {
  name: string;
  state: CheckpointState;
  /** plain-words reasons when state is 'unknown' */
  problems: string[];
  /** the bitmaps whose union is "changes since this checkpoint" */
  sources: { layer: string; bitmap: string }[];
  dirtyBytes: number | null;
}

export interface ChainReport {
  image: string;
  /** top first, as qemu-img info --backing-chain */
  layers: LayerInfo[];
  /** oldest first */
  checkpoints: CheckpointReport[];
  scannedAt: string;
  scanMs: number;
  /**
   * Layers a connected QEMU holds open (Strata's own daemon or a VM): their bitmaps read in-use on
   * disk while it runs, as expected, and their live states are that QEMU's. Filled by the service.
   */
  heldBy?: { file: string; connection: string; label: string; kind: 'daemon' | 'socket'; node: string; readOnly: boolean }[];
  /**
   * Set when a backing file is not where the chain says: `layers` then stop at `referencedBy`, and
   * every checkpoint is 'unknown'. `file` is the header's backing string, `expectedAt` the path
   * QEMU would open.
   */
  missingBacking?: { file: string; expectedAt: string; referencedBy: string };
}

/**
 * What a scan says about a chain at a glance: 'ok' only when every checkpoint is known and nothing
 * is wrong; 'unknown' when some checkpoint cannot be vouched for; 'problem' when the chain itself is
 * damaged (a missing backing file, stale bitmaps, a file that does not look like a disk).
 */
export interface ChainHealth {
  state: 'ok' | 'unknown' | 'problem';
  /** plain words: why (or, for 'ok', what was checked) */
  reasons: string[];
}

export interface WorkspaceImage {
  path: string;
  addedAt: string;
  lastScanAt: string | null;
  /** the last scan, as the history keeps it (null before the first) */
  lastScan: { layerCount: number; health: ChainHealth | null } | null;
}

export interface AppInfo {
  version: string;
  mode: 'electron' | 'browser';
  dataDir: string;
  qemuImg: string | null;
  platform: string;
}

export interface DemoResult {
  images: string[];
}

export interface DemoProgress {
  step: string;
  done: number;
  total: number;
}

export const workspaceArgs = {
  'app:info': noArg(),
  'workspace:list': noArg(),
  'workspace:add': obj({ path: absPath() }),
  'workspace:remove': obj({ path: absPath() }),
  'chain:inspect': obj({ path: absPath() }),
  'demo:create': noArg(),
  'dialog:open-image': noArg(),
};

export type WorkspaceChannels = ChannelsOf<
  typeof workspaceArgs,
  {
    'app:info': AppInfo;
    'workspace:list': WorkspaceImage[];
    /** Adds the image (after reading its chain) and answers with that first scan. */
    'workspace:add': { image: WorkspaceImage; report: ChainReport };
    'workspace:remove': void;
    'chain:inspect': ChainReport;
    'demo:create': DemoResult;
    /** Electron only: native file picker. Browser mode answers E_BAD_INPUT. */
    'dialog:open-image': string | null;
  }
>;

export interface WorkspaceEvents {
  'workspace:changed': WorkspaceImage[];
  'chain:scanned': ScanRecord;
  'demo:progress': DemoProgress;
}

