// The QMP protocol as a sans-IO state machine: bytes in, messages out, bytes to send out. No sockets,
// no timers: the transport (qmp/client.ts) owns those. Messages are one JSON object per line
// (QEMU never splits one across lines unless pretty=on, which Strata never asks for).

export const MAX_LINE = 10 * 1024 * 1024;

export interface QmpGreeting {
  QMP: { version: { qemu: { major: number; minor: number; micro: number }; package: string }; capabilities: string[] };
}

export interface QmpEvent {
  event: string;
  data?: Record<string, unknown>;
  timestamp?: { seconds: number; microseconds: number };
}

// Every output carries `line`: the message exactly as QEMU sent it (without its newline), for the
// traffic log. A violation's line is what was received, cut to 4 KiB.
export type ProtocolOutput = (
  | { kind: 'greeting'; greeting: QmpGreeting }
  | { kind: 'return'; id: string; value: unknown }
  | { kind: 'error'; id: string; errorClass: string; desc: string }
  | { kind: 'event'; event: QmpEvent }
  // unmatchedError: an error reply that carries no id (QEMU could not parse a command); the
  // transport decides which pending call(s) it fails.
  | { kind: 'violation'; why: string; fatal: boolean; unmatchedError?: QmpErrorBody }
) & { line: string };

/** How much of a line that broke the protocol is kept (a hostile peer may send 10 MiB). */
export const VIOLATION_LINE_KEEP = 4096;

export interface QmpErrorBody {
  errorClass: string;
  desc: string;
}

function errorBody(error: unknown): QmpErrorBody {
  const e = error as { class?: unknown; desc?: unknown } | null;
  return { errorClass: typeof e?.class === 'string' ? e.class : 'GenericError', desc: typeof e?.desc === 'string' ? e.desc : JSON.stringify(e) };
}

export type ProtocolState = 'awaiting-greeting' | 'negotiating' | 'ready' | 'closed';

export class QmpProtocol {
  state: ProtocolState = 'awaiting-greeting';
  private buf = '';
  private decoder = new TextDecoder('utf-8');
  private nextId = 1;
  private negotiationId: string | null = null;

  /** Feed received bytes; get every complete message they finish. */
  receive(chunk: Uint8Array | string): ProtocolOutput[] {
    if (this.state === 'closed') return [];
    this.buf += typeof chunk === 'string' ? chunk : this.decoder.decode(chunk, { stream: true });
    const out: ProtocolOutput[] = [];
    let nl: number;
    while ((nl = this.buf.indexOf('\n')) >= 0) {
      const line = this.buf.slice(0, nl).trim();
      this.buf = this.buf.slice(nl + 1);
      if (line.length > MAX_LINE) {
        out.push(this.fatal(`a message of ${line.length} bytes exceeds the ${MAX_LINE}-byte limit`, line));
        return out;
      }
      if (line) out.push(...this.message(line));
      if ((this.state as ProtocolState) === 'closed') return out;
    }
    if (this.buf.length > MAX_LINE) out.push(this.fatal(`an unterminated message exceeds the ${MAX_LINE}-byte limit`, this.buf));
    return out;
  }

  /** The bytes for a command; the id is a string so it cannot collide with QEMU's own numbers. */
  command(execute: string, args?: Record<string, unknown>): { id: string; bytes: string } {
    const id = `strata-${this.nextId++}`;
    const msg: Record<string, unknown> = { execute, id };
    if (args !== undefined) msg.arguments = args;
    return { id, bytes: JSON.stringify(msg) + '\n' };
  }

  /** After the greeting: the capabilities negotiation command. */
  negotiate(): { id: string; bytes: string } {
    const c = this.command('qmp_capabilities');
    this.negotiationId = c.id;
    this.state = 'negotiating';
    return c;
  }

  isNegotiation(id: string): boolean {
    return id === this.negotiationId;
  }

  negotiated(): void {
    this.state = 'ready';
  }

  close(): void {
    this.state = 'closed';
    this.buf = '';
  }

  private fatal(why: string, line = ''): ProtocolOutput {
    this.close();
    return { kind: 'violation', why, fatal: true, line: line.slice(0, VIOLATION_LINE_KEEP) };
  }

  private message(line: string): ProtocolOutput[] {
    let msg: unknown;
    try {
      msg = JSON.parse(line);
    } catch {
      return [this.fatal(`not JSON: ${line.slice(0, 80)}`, line)];
    }
    if (typeof msg !== 'object' || msg === null || Array.isArray(msg)) return [this.fatal(`not a JSON object: ${line.slice(0, 80)}`, line)];
    const m = msg as Record<string, unknown>;
    if (this.state === 'awaiting-greeting') {
      if (typeof m.QMP !== 'object' || m.QMP === null) return [this.fatal('the first message is not a QMP greeting', line)];
      return [{ kind: 'greeting', greeting: m as unknown as QmpGreeting, line }];
    }
    if (typeof m.event === 'string') return [{ kind: 'event', event: m as unknown as QmpEvent, line }];
    if ('return' in m || 'error' in m) {
      if (typeof m.id !== 'string') {
        // QEMU answers a command it could not parse without an id: no id can match it to a call.
        const v: ProtocolOutput = { kind: 'violation', why: `a reply without our id: ${line.slice(0, 120)}`, fatal: false, line: line.slice(0, VIOLATION_LINE_KEEP) };
        if ('error' in m) v.unmatchedError = errorBody(m.error);
        return [v];
      }
      if ('return' in m) return [{ kind: 'return', id: m.id, value: m.return, line }];
      return [{ kind: 'error', id: m.id, ...errorBody(m.error), line }];
    }
    return [{ kind: 'violation', why: `an unknown message: ${line.slice(0, 120)}`, fatal: false, line: line.slice(0, VIOLATION_LINE_KEEP) }];
  }
}
