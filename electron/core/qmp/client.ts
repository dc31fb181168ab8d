// The thin transport around QmpProtocol: a UNIX socket, timers, and promises for pending calls.
// One connection per monitor: QEMU serves one client per monitor chardev. A second client either
// waits silently or has its connection closed at once, depending on timing inside QEMU; both (no
// greeting before the connect timeout, or the connection gone before any greeting) are reported
// as the same busy-monitor error.
import net from 'node:net';
import { QmpProtocol, type QmpEvent, type QmpGreeting, type ProtocolOutput, type QmpErrorBody } from './protocol.ts';
import { QmpExecuteError, qmpError, type QmpError } from './errors.ts';

export interface QmpClientOptions {
  /** ms to wait for the socket and the greeting */
  connectTimeoutMs?: number;
  /** default per-call timeout */
  callTimeoutMs?: number;
  /** every line sent and received, raw, for the connection's traffic log */
  onTraffic?: (entry: QmpTraffic) => void;
}

/** What a line of traffic belongs to in Strata's history: the lines of a call carry its caller's tag. */
export interface TrafficTag {
  /** a journaled operation (bitmap change) */
  operation?: number;
  /** a job record */
  job?: number;
  /** a plan and its step index */
  plan?: number;
  step?: number;
}

/** One line on the wire, exactly as sent or received (without the newline). */
export interface QmpTraffic {
  dir: 'out' | 'in';
  line: string;
  at: string;
  /** our id of the call the line is (a reply to), if any */
  call: string | null;
  tag: TrafficTag | null;
  /** an event's name */
  event: string | null;
  /** the QEMU job an event is about (JOB_STATUS_CHANGE's id, BLOCK_JOB_*'s device) */
  qemuJob: string | null;
}

export interface ExecuteOptions {
  timeoutMs?: number;
  tag?: TrafficTag;
}

interface Pending {
  command: string;
  sent: string;
  tag: TrafficTag | null;
  resolve: (v: unknown) => void;
  reject: (e: Error) => void;
  timer: NodeJS.Timeout | null;
}

export class QmpClient {
  readonly path: string;
  greeting: QmpGreeting | null = null;
  private proto = new QmpProtocol();
  private socket: net.Socket | null = null;
  private pending = new Map<string, Pending>();
  private eventListeners = new Set<(e: QmpEvent) => void>();
  private closeListeners = new Set<(why: string) => void>();
  private closed = false;
  private opts: Required<Pick<QmpClientOptions, 'connectTimeoutMs' | 'callTimeoutMs'>> & QmpClientOptions;

  private constructor(path: string, opts: QmpClientOptions) {
    this.path = path;
    this.opts = { connectTimeoutMs: 5000, callTimeoutMs: 30000, ...opts };
  }

  static async connect(path: string, opts: QmpClientOptions = {}): Promise<QmpClient> {
    const c = new QmpClient(path, opts);
    await c.open();
    return c;
  }

  get state(): string {
    return this.closed ? 'closed' : this.proto.state;
  }

  private open(): Promise<void> {
    return new Promise((resolve, reject) => {
      let settled = false;
      const fail = (e: QmpError) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        this.shutdown(e.message, e);
        reject(e);
      };
      let connected = false;
      // Connected, and QEMU has said nothing yet: it is serving another client on this monitor.
      const busy = () => connected && this.proto.state === 'awaiting-greeting';
      const busyError = (what: string) =>
        qmpError.negotiation(this.path, `${what}: another client holds the monitor (QEMU serves one client per monitor)`);
      const timer = setTimeout(() => {
        fail(busy() ? busyError(`no greeting within ${this.opts.connectTimeoutMs} ms`) : qmpError.connect(this.path, `no answer within ${this.opts.connectTimeoutMs} ms`));
      }, this.opts.connectTimeoutMs);

      const sock = net.createConnection({ path: this.path });
      this.socket = sock;
      sock.once('connect', () => (connected = true));
      sock.on('error', (e: NodeJS.ErrnoException) => {
        if (!settled) fail(qmpError.connect(this.path, e.code === 'ENOENT' ? 'no such socket' : e.code === 'ECONNREFUSED' ? 'nothing is listening' : e.message, e));
        else this.shutdown(`socket error: ${e.message}`);
      });
      sock.on('close', () => {
        if (!settled) fail(busy() ? busyError('the connection closed before any greeting') : qmpError.negotiation(this.path, 'the connection closed before negotiation finished'));
        else this.shutdown('the connection closed');
      });
      sock.on('data', (chunk) => {
        for (const out of this.proto.receive(chunk)) {
          if (out.kind === 'greeting') {
            this.greeting = out.greeting;
            const n = this.proto.negotiate();
            this.traffic('in', out.line);
            this.send(n.bytes, n.id, null);
            this.pending.set(n.id, {
              command: 'qmp_capabilities',
              sent: n.bytes.trimEnd(),
              tag: null,
              resolve: () => {
                this.proto.negotiated();
                settled = true;
                clearTimeout(timer);
                resolve();
              },
              reject: (e) => fail(qmpError.negotiation(this.path, e.message)),
              timer: null,
            });
          } else this.handle(out, (e) => fail(e));
        }
      });
    });
  }

  private traffic(dir: 'out' | 'in', line: string, extra: Partial<QmpTraffic> = {}): void {
    this.opts.onTraffic?.({ dir, line, at: new Date().toISOString(), call: null, tag: null, event: null, qemuJob: null, ...extra });
  }

  private send(bytes: string, call: string, tag: TrafficTag | null): void {
    this.traffic('out', bytes.trimEnd(), { call, tag });
    this.socket?.write(bytes);
  }

  private handle(out: ProtocolOutput, onFatal: (e: QmpError) => void): void {
    switch (out.kind) {
      case 'return':
      case 'error': {
        const p = this.pending.get(out.id);
        // a late reply to a call that timed out is logged under its call id; nobody waits for it
        this.traffic('in', out.line, { call: out.id, tag: p?.tag ?? null });
        if (!p) return;
        this.pending.delete(out.id);
        if (p.timer) clearTimeout(p.timer);
        if (out.kind === 'return') p.resolve(out.value);
        else p.reject(new QmpExecuteError(p.command, out.errorClass, out.desc, { sent: p.sent, received: out.line }));
        return;
      }
      case 'event': {
        const d = out.event.data ?? {};
        const job = out.event.event === 'JOB_STATUS_CHANGE' ? d.id : out.event.event.startsWith('BLOCK_JOB_') ? d.device : undefined;
        this.traffic('in', out.line, { event: out.event.event, qemuJob: typeof job === 'string' ? job : null });
        for (const l of this.eventListeners) l(out.event);
        return;
      }
      case 'violation':
        this.traffic('in', out.line, { event: `(protocol: ${out.why})` });
        if (out.unmatchedError) this.failUnmatched(out.unmatchedError, out.line);
        if (out.fatal) {
          const e = qmpError.protocol(this.path, out.why);
          onFatal(e);
          this.shutdown(out.why, e);
        }
        return;
      case 'greeting':
        return;
    }
  }

  /**
   * An error reply without id (QEMU could not parse a command) fails the pending calls at once
   * rather than after their timeouts. With one call pending it is that call's answer: QEMU
   * replies to every line it reads, and there is no other line it could be answering. With
   * several, no id says which, and a line QEMU could not parse may have swallowed the next one:
   * every pending call fails with a protocol error that says so (its outcome in QEMU is unknown),
   * and a real reply that still comes for one of them is dropped like any late reply.
   */
  private failUnmatched(err: QmpErrorBody, received: string): void {
    const calls = [...this.pending];
    this.pending.clear();
    for (const [, p] of calls) {
      if (p.timer) clearTimeout(p.timer);
      p.reject(
        calls.length === 1
          ? new QmpExecuteError(p.command, err.errorClass, err.desc, { sent: p.sent, received })
          : qmpError.protocol(this.path, `an error without id (${err.errorClass}: ${err.desc}) while ${calls.length} calls were pending; ${p.command} may or may not have run`),
      );
    }
  }

  /** Run one command; rejects with QmpExecuteError (QEMU's class), timeout, interrupted or state errors. */
  execute<T = unknown>(command: string, args?: Record<string, unknown>, opts: ExecuteOptions = {}): Promise<T> {
    if (this.closed || this.proto.state !== 'ready') return Promise.reject(qmpError.state(this.path, command, this.state));
    const { id, bytes } = this.proto.command(command, args);
    return new Promise<T>((resolve, reject) => {
      const ms = opts.timeoutMs ?? this.opts.callTimeoutMs;
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(qmpError.timeout(this.path, command, ms));
      }, ms);
      const tag = opts.tag ?? null;
      this.pending.set(id, { command, sent: bytes.trimEnd(), tag, resolve: resolve as (v: unknown) => void, reject, timer });
      this.send(bytes, id, tag);
    });
  }

  onEvent(listener: (e: QmpEvent) => void): () => void {
    this.eventListeners.add(listener);
    return () => this.eventListeners.delete(listener);
  }

  onClose(listener: (why: string) => void): () => void {
    this.closeListeners.add(listener);
    return () => this.closeListeners.delete(listener);
  }

  /** Wait for an event matching `match`; the listener is installed before the caller sends anything. */
  waitEvent(match: (e: QmpEvent) => boolean, timeoutMs = 30000): Promise<QmpEvent> {
    return new Promise((resolve, reject) => {
      const off = this.onEvent((e) => {
        if (match(e)) {
          clearTimeout(timer);
          off();
          offClose();
          resolve(e);
        }
      });
      const offClose = this.onClose((why) => {
        clearTimeout(timer);
        off();
        reject(qmpError.interrupted(this.path, 'waiting for an event', why));
      });
      const timer = setTimeout(() => {
        off();
        offClose();
        reject(qmpError.timeout(this.path, 'event wait', timeoutMs));
      }, timeoutMs);
    });
  }

  private shutdown(why: string, cause?: QmpError): void {
    if (this.closed) return;
    this.closed = true;
    this.proto.close();
    for (const [id, p] of this.pending) {
      this.pending.delete(id);
      if (p.timer) clearTimeout(p.timer);
      p.reject(cause && cause.code === 'E_QMP_PROTOCOL' ? cause : qmpError.interrupted(this.path, p.command, why));
    }
    this.socket?.destroy();
    for (const l of this.closeListeners) l(why);
  }

  close(): Promise<void> {
    return new Promise((resolve) => {
      if (this.closed || !this.socket) {
        this.shutdown('closed by Strata');
        resolve();
        return;
      }
      this.socket.once('close', () => resolve());
      this.shutdown('closed by Strata');
    });
  }
}
