// A small NBD client over the sans-IO parser: fixed newstyle handshake, structured replies,
// metadata contexts (qemu:dirty-bitmap:NAME, qemu:allocation-depth, base:allocation), and block
// status walked in requests under 4 GiB. Read-only: it never sends a write.
import net from 'node:net';
import { NbdReplyParser, NbdProtocolError, type NbdMessage } from './parser.ts';
import * as W from './wire.ts';
import { StrataError } from '../errors.ts';

export interface NbdExport {
  size: number;
  flags: number;
  /** context name -> id, for the contexts the server agreed to */
  contexts: Map<string, number>;
}

/** status runs in byte order: [offset, length, flags] */
export type StatusSink = (offset: number, length: number, flags: number) => void;

function nbdError(where: string, msg: string, cause?: unknown): StrataError {
  return new StrataError('E_IO', `${where}: NBD: ${msg}`, { file: where, cause });
}

export class NbdClient {
  private parser = new NbdReplyParser();
  private queue: NbdMessage[] = [];
  private waiters: { resolve: (m: NbdMessage) => void; reject: (e: Error) => void }[] = [];
  private failure: Error | null = null;
  private nextCookie = 1n;
  export: NbdExport | null = null;

  private constructor(private socket: net.Socket, readonly where: string) {
    socket.on('data', (b) => {
      this.parser.push(b);
      try {
        for (let m = this.parser.next(); m; m = this.parser.next()) this.deliver(m);
      } catch (e) {
        this.fail(e instanceof NbdProtocolError ? nbdError(where, e.message) : (e as Error));
        socket.destroy();
      }
    });
    socket.on('error', (e) => this.fail(nbdError(where, e.message, e)));
    socket.on('close', () => this.fail(nbdError(where, 'the server closed the connection')));
  }

  /** Connect to a UNIX socket and open one export with the given metadata contexts. */
  static async open(socketPath: string, exportName: string, contexts: string[], timeoutMs = 10000): Promise<NbdClient> {
    const socket = await new Promise<net.Socket>((resolve, reject) => {
      const s = net.createConnection({ path: socketPath });
      const t = setTimeout(() => {
        s.destroy();
        reject(nbdError(socketPath, `no answer within ${timeoutMs} ms`));
      }, timeoutMs);
      s.once('connect', () => {
        clearTimeout(t);
        resolve(s);
      });
      s.once('error', (e) => {
        clearTimeout(t);
        reject(nbdError(socketPath, (e as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such socket' : e.message, e));
      });
    });
    const c = new NbdClient(socket, socketPath);
    try {
      await c.handshake(exportName, contexts);
    } catch (e) {
      socket.destroy();
      throw e;
    }
    return c;
  }

  private deliver(m: NbdMessage): void {
    const w = this.waiters.shift();
    if (w) w.resolve(m);
    else this.queue.push(m);
  }

  private fail(e: Error): void {
    if (this.failure) return;
    this.failure = e;
    for (const w of this.waiters.splice(0)) w.reject(e);
  }

  private recv(): Promise<NbdMessage> {
    const m = this.queue.shift();
    if (m) return Promise.resolve(m);
    if (this.failure) return Promise.reject(this.failure);
    return new Promise((resolve, reject) => this.waiters.push({ resolve, reject }));
  }

  private async optionReplies(opt: number): Promise<{ type: number; data: Buffer }[]> {
    const out: { type: number; data: Buffer }[] = [];
    for (;;) {
      const m = await this.recv();
      if (m.kind !== 'option-reply' || m.option !== opt) throw nbdError(this.where, `unexpected reply during option ${opt}`);
      if (m.type & W.REP_ERR_BIT) {
        const code = m.type & ~W.REP_ERR_BIT;
        const text = m.data.length ? `: ${m.data.toString('utf8')}` : '';
        throw nbdError(this.where, `option ${opt} refused (${W.REP_ERRORS[code] ?? `error ${code}`})${text}`);
      }
      out.push({ type: m.type, data: m.data });
      if (m.type === W.REP.ACK) return out;
    }
  }

  private async handshake(exportName: string, contexts: string[]): Promise<void> {
    const g = await this.recv();
    if (g.kind !== 'greeting') throw nbdError(this.where, 'no greeting');
    if (!(g.flags & W.FLAG_FIXED_NEWSTYLE)) throw nbdError(this.where, 'server does not support fixed newstyle');
    this.socket.write(W.clientFlags(g.flags));
    this.socket.write(W.option(W.OPT.STRUCTURED_REPLY));
    await this.optionReplies(W.OPT.STRUCTURED_REPLY);
    const agreed = new Map<string, number>();
    if (contexts.length) {
      this.socket.write(W.setMetaContext(exportName, contexts));
      for (const r of await this.optionReplies(W.OPT.SET_META_CONTEXT)) {
        if (r.type === W.REP.META_CONTEXT) agreed.set(r.data.toString('utf8', 4), r.data.readUInt32BE(0));
      }
    }
    this.socket.write(W.go(exportName));
    let size = -1;
    let flags = 0;
    for (const r of await this.optionReplies(W.OPT.GO)) {
      if (r.type === W.REP.INFO && r.data.readUInt16BE(0) === W.INFO_EXPORT) {
        size = Number(r.data.readBigUInt64BE(2));
        flags = r.data.readUInt16BE(10);
      }
    }
    if (size < 0) throw nbdError(this.where, 'the server sent no export size');
    this.parser.phase = 'transmission';
    this.export = { size, flags, contexts: agreed };
  }

  /**
   * Walk one metadata context over [offset, offset+length), in requests under 4 GiB. QEMU may
   * describe less than asked; the walk continues from where each reply stops.
   */
  async blockStatus(context: string, sink: StatusSink, offset = 0, length?: number): Promise<void> {
    const exp = this.export;
    if (!exp) throw nbdError(this.where, 'not connected');
    const id = exp.contexts.get(context);
    if (id === undefined) throw new StrataError('E_BAD_INPUT', `${this.where}: the server did not agree to the metadata context '${context}'`);
    const end = Math.min(exp.size, offset + (length ?? exp.size));
    let pos = offset;
    while (pos < end) {
      const want = Math.min(end - pos, W.MAX_STATUS_REQUEST);
      const cookie = this.nextCookie++;
      this.socket.write(W.command(W.CMD.BLOCK_STATUS, cookie, pos, want));
      let covered = pos;
      for (;;) {
        const m = await this.recv();
        if (m.kind === 'simple-reply') {
          if (m.error) throw nbdError(this.where, `block status at ${pos} failed (errno ${m.error})`);
          break;
        }
        if (m.kind !== 'chunk' || m.cookie !== cookie) throw nbdError(this.where, 'reply for an unknown request');
        if (m.type === W.CHUNK.BLOCK_STATUS) {
          if (m.payload.readUInt32BE(0) === id) {
            for (let at = 4; at + 8 <= m.payload.length; at += 8) {
              const len = Math.min(m.payload.readUInt32BE(at), end - covered);
              if (len <= 0) break;
              sink(covered, len, m.payload.readUInt32BE(at + 4));
              covered += len;
            }
          }
        } else if (m.type === W.CHUNK.ERROR || m.type === W.CHUNK.ERROR_OFFSET) {
          const errno = m.payload.readUInt32BE(0);
          const msgLen = m.payload.readUInt16BE(4);
          throw nbdError(this.where, `block status at ${pos} failed (errno ${errno}) ${m.payload.toString('utf8', 6, 6 + msgLen)}`);
        }
        if (m.flags & W.CHUNK_FLAG_DONE) break;
      }
      if (covered === pos) throw nbdError(this.where, `the server described nothing at offset ${pos}`);
      pos = covered;
    }
  }

  async close(): Promise<void> {
    if (!this.socket.destroyed) {
      if (this.export) this.socket.write(W.command(W.CMD.DISC, this.nextCookie++, 0, 0));
      await new Promise<void>((r) => this.socket.end(r));
      this.socket.destroy();
    }
  }
}
