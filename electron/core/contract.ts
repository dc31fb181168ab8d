// The one contract between the core and the renderer. Every request channel maps to its argument
// and result type; every pushed event maps to its payload. Both transports (Electron IPC through the
// preload, WebSocket in browser mode) carry exactly these shapes, wrapped in Reply<T>.
//
// This file holds types and plain data only: the renderer imports it too.

export interface Extent {
  start: number;
  length: number;
}

export type BitmapFlag = 'in-use' | 'auto';

export interface BitmapInfo {
  name: string;
  granularity: number;
  /** on-disk flags: 'auto' = recording, 'in-use' = inconsistent unless a live QEMU holds the image */
  flags: BitmapFlag[];
  dirtyBytes: number;
  /** position in the layer's bitmap directory = creation order within the layer */
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
  bitmaps: BitmapInfo[];
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
}

/** What to draw in the inspector: one bitmap, the allocation of one layer, or changes since a checkpoint. */
export type ContentSource =
  | { kind: 'bitmap'; layer: string; name: string }
  | { kind: 'allocation'; layer: string }
  | { kind: 'since'; image: string; checkpoint: string };

export interface DensityRequest {
  source: ContentSource;
  start: number;
  end: number;
  buckets: number;
}

export interface DensityResult {
  start: number;
  end: number;
  bucketSize: number;
  /** bytes marked in each bucket (0..bucketSize) */
  marked: number[];
  totalMarked: number;
}

export interface ExtentsRequest {
  source: ContentSource;
  start: number;
  end: number;
  limit: number;
}

export interface ExtentsResult {
  extents: Extent[];
  truncated: boolean;
}

export interface WorkspaceImage {
  path: string;
  addedAt: string;
  lastScanAt: string | null;
}

export interface ScanRecord {
  id: number;
  image: string;
  scannedAt: string;
  layers: { path: string; allocatedBytes: number; bitmaps: { name: string; flags: BitmapFlag[]; dirtyBytes: number }[] }[];
  /** what changed against the previous scan of the same image, in plain words */
  changes: string[];
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

/** Request channels: name -> [argument, result]. */
export interface Channels {
  'app:info': [void, AppInfo];
  'workspace:list': [void, WorkspaceImage[]];
  /** Adds the image (after reading its chain) and answers with that first scan. */
  'workspace:add': [{ path: string }, { image: WorkspaceImage; report: ChainReport }];
  'workspace:remove': [{ path: string }, void];
  'chain:inspect': [{ path: string }, ChainReport];
  'contents:density': [DensityRequest, DensityResult];
  'contents:extents': [ExtentsRequest, ExtentsResult];
  'history:scans': [{ image?: string; limit?: number }, ScanRecord[]];
  'demo:create': [void, DemoResult];
  /** Electron only: native file picker. Browser mode answers E_BAD_INPUT. */
  'dialog:open-image': [void, string | null];
}

/** Pushed events: name -> payload. */
export interface Events {
  'workspace:changed': WorkspaceImage[];
  'chain:scanned': ScanRecord;
  'demo:progress': DemoProgress;
}

export type Channel = keyof Channels;
export type EventName = keyof Events;
export type ArgOf<C extends Channel> = Channels[C][0];
export type ResultOf<C extends Channel> = Channels[C][1];

export interface WireError {
  code: string;
  message: string;
}

export type Reply<T> = { ok: true; result: T } | { ok: false; error: WireError };

/** Runtime list, checked against Channels by the type below, so a channel cannot be forgotten. */
export const CHANNELS = [
  'app:info',
  'workspace:list',
  'workspace:add',
  'workspace:remove',
  'chain:inspect',
  'contents:density',
  'contents:extents',
  'history:scans',
  'demo:create',
  'dialog:open-image',
] as const satisfies readonly Channel[];

export const EVENTS = ['workspace:changed', 'chain:scanned', 'demo:progress'] as const satisfies readonly EventName[];

type Missing<T extends string, L extends readonly string[]> = Exclude<T, L[number]>;
// Compile-time check: both lists are complete.
const _channelsComplete: Missing<Channel, typeof CHANNELS> extends never ? true : never = true;
const _eventsComplete: Missing<EventName, typeof EVENTS> extends never ? true : never = true;
void _channelsComplete;
void _eventsComplete;

/** The surface the renderer sees, whatever the transport. */
export interface StrataApi {
  invoke<C extends Channel>(channel: C, arg: ArgOf<C>): Promise<Reply<ResultOf<C>>>;
  on<E extends EventName>(event: E, listener: (payload: Events[E]) => void): () => void;
}

/** WebSocket framing in browser mode. */
export type WsClientMessage = { id: number; channel: Channel; arg: unknown };
export type WsServerMessage =
  | { id: number; reply: Reply<unknown> }
  | { event: EventName; payload: unknown };
