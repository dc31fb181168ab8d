// The one contract between the core and the renderer. Every request channel maps to its argument
// and result type; every pushed event maps to its payload. Both transports (Electron IPC through the
// preload, WebSocket in browser mode) carry exactly these shapes, wrapped in Reply<T>.
//
// Each feature keeps its part in its own folder (<feature>/contract.ts: its types, and the valibot
// schema of each channel's argument, from which the argument's type comes); this file merges them.
// It re-exports types only and holds plain data, so the renderer and the preload can import it
// without pulling in a schema (the schemas meet at run time in ./arg-schemas.ts, used by dispatch).
import type { WorkspaceChannels, WorkspaceEvents } from './workspace/contract.ts';
import type { ContentsChannels } from './contents/contract.ts';
import type { ConnectionChannels, ConnectionEvents } from './connections/contract.ts';
import type { JobChannels, JobEvents } from './jobs/contract.ts';
import type { BitmapChannels } from './bitmaps/contract.ts';
import type { PlanChannels, PlanEvents } from './plans/contract.ts';
import type { HistoryChannels } from './history/contract.ts';
import type { RepairChannels } from './repair/contract.ts';
import type { BackupChannels, BackupEvents } from './backup/contract.ts';
import type { ChainOpChannels } from './chain-ops/contract.ts';

export type * from './workspace/contract.ts';
export type * from './contents/contract.ts';
export type * from './connections/contract.ts';
export type * from './jobs/contract.ts';
export type * from './bitmaps/contract.ts';
export type * from './plans/contract.ts';
export type * from './history/contract.ts';
export type * from './repair/contract.ts';
export type * from './backup/contract.ts';
export type * from './chain-ops/contract.ts';

/** Request channels: name -> [argument, result]. */
export interface Channels extends WorkspaceChannels, ContentsChannels, ConnectionChannels, JobChannels, BitmapChannels, PlanChannels, HistoryChannels, RepairChannels, BackupChannels, ChainOpChannels {}

/** Pushed events: name -> payload. */
export interface Events extends WorkspaceEvents, ConnectionEvents, JobEvents, PlanEvents, BackupEvents {}

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
  'connection:traffic',
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
  'history:activity',
  'repair:plan',
  'repair:apply',
  'chain-op:plan',
  'chain-op:apply',
  'repair:check-backing',
  'repair:rebase',
  'backup:list',
  'backup:take',
  'backup:cancel',
  'backup:restore',
  'backup:verify',
  'backup:checkpoints',
  'backup:prune-plan',
  'backup:prune',
] as const satisfies readonly Channel[];

export const EVENTS = ['workspace:changed', 'chain:scanned', 'demo:progress', 'connection:changed', 'job:changed', 'job:progress', 'plan:changed', 'backup:progress', 'backup:changed'] as const satisfies readonly EventName[];

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
