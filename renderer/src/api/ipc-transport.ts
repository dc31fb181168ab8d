// Electron: the preload already exposes the contract's shape as window.strata; this only adapts it
// to the Transport interface (IPC cannot drop, so the status is always open).
import type { StrataApi } from '../../../electron/core/contract';
import type { ConnectionStatus, Transport } from './transport';

type Bridge = NonNullable<Window['strata']>;

export class IpcTransport implements Transport {
  readonly kind = 'ipc' as const;
  readonly invoke: StrataApi['invoke'];
  readonly on: StrataApi['on'];
  private readonly bridge: Bridge;

  constructor(bridge: Bridge) {
    this.bridge = bridge;
    // contextBridge objects are frozen proxies: call through, do not rebind.
    this.invoke = (channel, arg) => bridge.invoke(channel, arg);
    this.on = (event, listener) => bridge.on(event, listener);
  }

  status(): ConnectionStatus {
    return { state: 'open', retryAt: null, fatal: null, failures: 0 };
  }

  onStatus(listener: (s: ConnectionStatus) => void): () => void {
    listener(this.status());
    return () => {};
  }

  reconnectNow(): void {}

  pathForFile(file: File): string | undefined {
    return this.bridge.pathForFile?.(file) || undefined;
  }
}
