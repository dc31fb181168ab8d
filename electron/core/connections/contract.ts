// Connections: running QEMUs (a QMP socket) and Strata's own qemu-storage-daemon for an offline
// image, with their block graphs.
import * as v from 'valibot';
import { absPath, id, limit, noArg, obj, type ChannelsOf } from '../schema.ts';
import type { QmpLogLine } from '../history/contract.ts';

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

const byId = () => obj({ id: id() });

export const connectionArgs = {
  'connection:list': noArg(),
  'connection:add-socket': obj({ path: absPath() }),
  'connection:scan-folder': obj({ path: absPath() }),
  // readOnly unless false is said
  'connection:open-image': obj({ image: absPath(), readOnly: v.optional(v.boolean('expected true or false'), true) }),
  'connection:restart': byId(),
  'connection:close': byId(),
  'connection:graph': byId(),
  'connection:traffic': obj({ id: id(), limit: limit() }),
};

export type ConnectionChannels = ChannelsOf<
  typeof connectionArgs,
  {
    'connection:list': ConnectionInfo[];
    /** a running QEMU's QMP socket */
    'connection:add-socket': ConnectionInfo;
    /** every *.sock / *.qmp in a folder that answers as a QMP monitor */
    'connection:scan-folder': ConnectionInfo[];
    /** an offline image in Strata's own qemu-storage-daemon */
    'connection:open-image': ConnectionInfo;
    'connection:restart': ConnectionInfo;
    'connection:close': void;
    'connection:graph': BlockGraph;
    /** the newest lines of the connection's QMP traffic, raw, oldest first (200 unless limit) */
    'connection:traffic': QmpLogLine[];
  }
>;

export interface ConnectionEvents {
  'connection:changed': ConnectionInfo[];
}
