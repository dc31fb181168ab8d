// Browser mode: the contract over one WebSocket to the page's own host:port. Requests made while the
// socket is down wait in a queue; requests in flight when it drops are answered E_DISCONNECTED (they
// may or may not have run, so they are never silently re-sent). Reconnects with capped backoff.
import type { Channel, EventName, Events, Reply, StrataApi, WsClientMessage, WsServerMessage } from '../../../electron/core/contract';
import { DISCONNECTED, type ConnectionStatus, type Transport } from './transport';

const BACKOFF_MS = [300, 1000, 2000, 4000, 8000];

export class WsTransport implements Transport {
  readonly kind = 'websocket' as const;
  private ws: WebSocket | null = null;
  private nextId = 1;
  private readonly pending = new Map<number, (r: Reply<unknown>) => void>();
  private queue: WsClientMessage[] = [];
  /** ids written to the current socket and not yet answered */
  private readonly sent = new Set<number>();
  private readonly listeners = new Map<EventName, Set<(payload: unknown) => void>>();
  private readonly statusListeners = new Set<(s: ConnectionStatus) => void>();
  private current: ConnectionStatus = { state: 'connecting', retryAt: null, fatal: null, failures: 0 };
  private attempt = 0;
  private timer: ReturnType<typeof setTimeout> | null = null;

  constructor(private readonly url: string | null, fatal?: string) {
    if (fatal || !url) this.setStatus({ state: 'closed', retryAt: null, fatal: fatal ?? 'no server address', failures: 0 });
    else this.connect();
  }

  readonly invoke: StrataApi['invoke'] = (channel, arg) => {
    const id = this.nextId++;
    const msg: WsClientMessage = { id, channel: channel as Channel, arg: arg === undefined ? null : arg };
    return new Promise((resolve) => {
      this.pending.set(id, resolve as (r: Reply<unknown>) => void);
      if (this.current.fatal) {
        this.pending.delete(id);
        resolve({ ok: false, error: { code: 'E_DISCONNECTED', message: this.current.fatal } });
      } else if (this.ws && this.ws.readyState === WebSocket.OPEN) this.send(this.ws, msg);
      else this.queue.push(msg);
    });
  };

  readonly on: StrataApi['on'] = (event, listener) => {
    let set = this.listeners.get(event);
    if (!set) this.listeners.set(event, (set = new Set()));
    const l = listener as (payload: unknown) => void;
    set.add(l);
    return () => set.delete(l);
  };

  status(): ConnectionStatus {
    return this.current;
  }

  onStatus(listener: (s: ConnectionStatus) => void): () => void {
    this.statusListeners.add(listener);
    listener(this.current);
    return () => this.statusListeners.delete(listener);
  }

  reconnectNow(): void {
    if (this.current.fatal || this.current.state !== 'closed') return;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    this.connect();
  }

  private setStatus(s: ConnectionStatus): void {
    this.current = s;
    for (const l of this.statusListeners) l(s);
  }

  private connect(): void {
    this.setStatus({ state: 'connecting', retryAt: null, fatal: null, failures: this.attempt });
    let ws: WebSocket;
    try {
      ws = new WebSocket(this.url!);
    } catch (e) {
      this.setStatus({ state: 'closed', retryAt: null, fatal: `cannot open the connection: ${(e as Error).message}`, failures: this.attempt });
      return;
    }
    this.ws = ws;
    ws.onopen = () => {
      this.attempt = 0;
      this.setStatus({ state: 'open', retryAt: null, fatal: null, failures: 0 });
      const q = this.queue;
      this.queue = [];
      for (const m of q) this.send(ws, m);
    };
    ws.onmessage = (ev) => this.receive(ev.data);
    ws.onclose = () => {
      if (this.ws !== ws) return;
      this.ws = null;
      // Only requests actually sent are failed; queued ones still wait for the next connection.
      for (const id of this.sent) {
        this.pending.get(id)?.({ ok: false, error: DISCONNECTED });
        this.pending.delete(id);
      }
      this.sent.clear();
      this.scheduleReconnect();
    };
    // onerror is always followed by onclose; nothing to do here.
    ws.onerror = () => {};
  }

  private send(ws: WebSocket, msg: WsClientMessage): void {
    this.sent.add(msg.id);
    ws.send(JSON.stringify(msg));
  }

  private scheduleReconnect(): void {
    const delay = BACKOFF_MS[Math.min(this.attempt, BACKOFF_MS.length - 1)];
    this.attempt++;
    const retryAt = Date.now() + delay;
    this.setStatus({ state: 'closed', retryAt, fatal: null, failures: this.attempt });
    this.timer = setTimeout(() => {
      this.timer = null;
      this.connect();
    }, delay);
  }

  private receive(data: unknown): void {
    if (typeof data !== 'string') return;
    let msg: WsServerMessage;
    try {
      msg = JSON.parse(data) as WsServerMessage;
    } catch {
      return;
    }
    if ('id' in msg && typeof msg.id === 'number') {
      const resolve = this.pending.get(msg.id);
      if (resolve) {
        this.pending.delete(msg.id);
        this.sent.delete(msg.id);
        resolve(msg.reply);
      }
    } else if ('event' in msg) {
      const set = this.listeners.get(msg.event);
      if (set) for (const l of [...set]) l(msg.payload as Events[typeof msg.event]);
    }
  }
}
