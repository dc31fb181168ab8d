// What the stores need from a transport: the contract's StrataApi plus connection state, so the UI
// can say whether it is talking to the core. IPC is always "open"; the WebSocket comes and goes.
import type { StrataApi } from '../../../electron/core/contract';

export type TransportKind = 'ipc' | 'websocket';
export type ConnectionState = 'connecting' | 'open' | 'closed';

export interface ConnectionStatus {
  state: ConnectionState;
  /** epoch ms of the next reconnect attempt while closed */
  retryAt: number | null;
  /** set when reconnecting cannot help (e.g. no token in the address) */
  fatal: string | null;
  /** connection attempts that failed in a row */
  failures: number;
}

export interface Transport extends StrataApi {
  readonly kind: TransportKind;
  status(): ConnectionStatus;
  onStatus(listener: (s: ConnectionStatus) => void): () => void;
  reconnectNow(): void;
  /** Electron only: the path of a dropped file. */
  pathForFile?(file: File): string | undefined;
}

/** Reply used when the link dropped before the core answered. */
export const DISCONNECTED = {
  code: 'E_DISCONNECTED',
  message: 'the connection to the Strata core was lost before it answered; try again once it is back',
};
