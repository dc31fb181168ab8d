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
  /** doubts that this file is a disk at all (a raw "disk" that starts like text or an archive) */
  warnings: string[];
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
  | { kind: 'since'; image: string; checkpoint: string }
  /** a bitmap of a live connection's node, read over NBD (exported, read, and cleaned up) */
  | { kind: 'live-bitmap'; connection: string; node: string; name: string };

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

/** What changed in a chain between two scans, as a code with its facts (paths absolute, sizes bytes). */
export type Drift =
  | { code: 'layer-added' | 'layer-removed'; layer: string }
  | { code: 'backing-changed'; layer: string; from: string | null; to: string | null }
  | { code: 'allocation-changed'; layer: string; from: number; to: number }
  | { code: 'bitmap-added' | 'bitmap-removed'; layer: string; bitmap: string }
  | { code: 'bitmap-flags-changed'; layer: string; bitmap: string; from: BitmapFlag[]; to: BitmapFlag[] }
  | { code: 'bitmap-dirty-changed'; layer: string; bitmap: string; from: number; to: number };

export interface ScanRecord {
  id: number;
  image: string;
  scannedAt: string;
  layers: { path: string; allocatedBytes: number; bitmaps: { name: string; flags: BitmapFlag[]; dirtyBytes: number }[] }[];
  /** the first scan of this image: nothing to compare with */
  first: boolean;
  /** what changed against the previous scan of the same image */
  drift: Drift[];
  /** the same in plain words, for display */
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

export type ConnectionKind = 'daemon' | 'socket';
export type ConnectionState = 'connecting' | 'connected' | 'lost' | 'closed';

export interface ConnectionInfo {
  id: string;
  kind: ConnectionKind;
  /** the image for Strata's own daemon, the socket path for a VM */
  label: string;
  socket: string;
  image: string | null;
  readOnly: boolean;
  state: ConnectionState;
  /** why it was lost, in plain words */
  error: string | null;
  qemuVersion: string | null;
  pid: number | null;
}

export interface LiveBitmapInfo {
  name: string | null;
  recording: boolean;
  persistent: boolean;
  busy: boolean;
  granularity: number;
  count: number;
  inconsistent: boolean;
}

export interface BlockNodeInfo {
  name: string;
  driver: string;
  file: string;
  readOnly: boolean;
  virtualSize: number | null;
  bitmaps: LiveBitmapInfo[];
}

export interface BlockGraph {
  nodes: BlockNodeInfo[];
  /** parent -> child edges from x-debug-query-block-graph (backing, file, ...) */
  edges: { parent: string; child: string; role: string }[];
}

export type JobStateName = 'undefined' | 'created' | 'running' | 'paused' | 'ready' | 'standby' | 'waiting' | 'pending' | 'aborting' | 'concluded' | 'null';
export type JobVerbName = 'cancel' | 'pause' | 'resume' | 'set-speed' | 'complete' | 'finalize' | 'dismiss';

export interface JobInfo {
  connection: string;
  id: string;
  type: string;
  state: JobStateName;
  verbs: JobVerbName[];
  current: number;
  total: number;
  /** bytes/s over the last seconds; null while not running or not yet measurable */
  rate: number | null;
  /** null unless the rate is steady */
  etaSeconds: number | null;
  /** the speed limit Strata set (bytes/s), null for none or not known (a job Strata did not start) */
  speed: number | null;
  error: string | null;
  record: number | null;
}

/** `device` defaults to the top node of Strata's own daemon. */
export type JobStartSpec =
  | { type: 'block-stream'; device?: string; speed?: number }
  | { type: 'block-commit'; device?: string; topNode?: string; baseNode?: string; speed?: number };

export interface JobRecordInfo {
  id: number;
  qemuId: string;
  connection: string;
  type: string;
  state: string;
  error: string | null;
  createdAt: string;
  finishedAt: string | null;
  events: { at: string; state: string; note: string | null }[];
}

export interface OperationInfo {
  id: number;
  kind: string;
  target: string;
  summary: string;
  state: string;
  error: string | null;
  createdAt: string;
  finishedAt: string | null;
  /** the QMP exchanged: -> sent, <- received */
  log: { dir: 'out' | 'in'; line: string; at: string }[];
}

/** Where a bitmap change goes: an offline image (Strata's own daemon) or a node of a live connection. */
export type BitmapTarget = { kind: 'image'; image: string } | { kind: 'connection'; connection: string; node: string };

export type BitmapOpSpec =
  | { op: 'add'; name: string; granularity?: number; persistent: boolean; disabled: boolean }
  | { op: 'remove' | 'enable' | 'disable' | 'clear'; name: string }
  /** a source's `where` is null (same node), a layer file, or a node name */
  | { op: 'merge'; target: string; sources: { where: string | null; name: string }[] };

export interface BitmapPlanInfo {
  summary: string;
  /** the exact QMP command that will be sent */
  qmp: unknown;
}

/** What a commit plan does to the checkpoints, shown before it runs and kept with the plan. */
export interface CommitEffects {
  scheme: 'seed' | 'libvirt';
  /** the layer committed (it leaves the chain) and the one it is committed into */
  top: string;
  base: string;
  /** the image the disk runs on afterwards */
  active: string;
  /** base bitmaps disabled while the commit copies (they keep exactly what they had) */
  disabledDuringCommit: string[];
  /** base bitmaps that keep recording through the commit, and why */
  keptRecording: { name: string; why: string }[];
  /** the top's bitmaps carried into the base (created there when missing), merged from the top's */
  carried: { name: string; granularity: number; persistent: boolean; created: boolean; recordsAfter: boolean }[];
  /** the top's bitmaps that are not carried, and why */
  lost: { name: string; why: string }[];
  /** base bitmaps disabled for the commit and recording again afterwards */
  reEnabled: string[];
  /** every bitmap enabled after the switch-over (re-enabled or carried) */
  enabledAfter: string[];
  /** the checkpoints the chain still has afterwards, oldest first */
  checkpointsKept: string[];
}

export type PlanKind = 'commit-with-bitmaps';

/** A plan's kind and parameters, as plan:preview and plan:start take them. */
export type PlanRequest = {
  kind: 'commit-with-bitmaps';
  /** a live connection (Strata's daemon holding the image read-write, or a VM); device: the top node */
  params: { connection: string; device?: string; scheme?: 'seed' | 'libvirt'; speed?: number };
};

export interface PlanStepInfo {
  label: string;
  state: 'pending' | 'running' | 'done' | 'undone' | 'failed';
  note: string | null;
  /** the exact QMP the step sends, in order */
  commands: { execute: string; arguments: Record<string, unknown> }[];
}

/** A plan laid out but not journaled or run: what the confirmation shows. */
export interface PlanPreview {
  kind: PlanKind;
  summary: string;
  steps: Omit<PlanStepInfo, 'state' | 'note'>[];
  effects: CommitEffects | null;
}

export interface PlanInfo {
  id: number;
  kind: string;
  summary: string;
  state: 'running' | 'done' | 'rolled-back' | 'failed';
  error: string | null;
  /** what Strata did, in plain words (after a restart: whether it resumed or rolled back) */
  resolution: string | null;
  steps: PlanStepInfo[];
  effects: CommitEffects | null;
  createdAt: string;
  finishedAt: string | null;
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
  'connection:list': [void, ConnectionInfo[]];
  /** a running QEMU's QMP socket */
  'connection:add-socket': [{ path: string }, ConnectionInfo];
  /** every *.sock / *.qmp in a folder that answers as a QMP monitor */
  'connection:scan-folder': [{ path: string }, ConnectionInfo[]];
  /** an offline image in Strata's own qemu-storage-daemon */
  'connection:open-image': [{ image: string; readOnly: boolean }, ConnectionInfo];
  'connection:restart': [{ id: string }, ConnectionInfo];
  'connection:close': [{ id: string }, void];
  'connection:graph': [{ id: string }, BlockGraph];
  'job:list': [{ connection?: string }, JobInfo[]];
  'job:start': [{ connection: string; spec: JobStartSpec }, JobInfo];
  /** `speed` (bytes/s, 0 = unlimited) goes with set-speed */
  'job:verb': [{ connection: string; id: string; verb: JobVerbName; speed?: number }, void];
  'history:jobs': [{ limit?: number }, JobRecordInfo[]];
  'history:operations': [{ limit?: number }, OperationInfo[]];
  /** what a change would send; changes nothing */
  'bitmap:plan': [{ target: BitmapTarget; op: BitmapOpSpec }, BitmapPlanInfo];
  /** runs a change the user confirmed; journaled before its first command */
  'bitmap:apply': [{ target: BitmapTarget; op: BitmapOpSpec }, BitmapPlanInfo & { operation: number }];
  /** lays a plan out from what QEMU shows now: its steps with their QMP and its effects; changes nothing */
  'plan:preview': [PlanRequest, PlanPreview];
  /** journals the plan, then runs it in the background (plan:changed follows it) */
  'plan:start': [PlanRequest, PlanInfo];
  'history:plans': [{ limit?: number }, PlanInfo[]];
}

/** Pushed events: name -> payload. */
export interface Events {
  'workspace:changed': WorkspaceImage[];
  'chain:scanned': ScanRecord;
  'demo:progress': DemoProgress;
  'connection:changed': ConnectionInfo[];
  /** a job's state changed (always pushed) */
  'job:changed': JobInfo;
  /** a job's progress moved (at most ~10 a second per job) */
  'job:progress': JobInfo;
  /** a plan started, advanced, finished, or was resumed / rolled back after a restart */
  'plan:changed': PlanInfo;
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
  'connection:list',
  'connection:add-socket',
  'connection:scan-folder',
  'connection:open-image',
  'connection:restart',
  'connection:close',
  'connection:graph',
  'job:list',
  'job:start',
  'job:verb',
  'history:jobs',
  'history:operations',
  'bitmap:plan',
  'bitmap:apply',
  'plan:preview',
  'plan:start',
  'history:plans',
] as const satisfies readonly Channel[];

export const EVENTS = ['workspace:changed', 'chain:scanned', 'demo:progress', 'connection:changed', 'job:changed', 'job:progress', 'plan:changed'] as const satisfies readonly EventName[];

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
