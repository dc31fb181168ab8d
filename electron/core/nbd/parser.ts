// Sans-IO NBD reply parser: feed bytes, take complete messages. It knows which phase the
// connection is in (greeting, option replies, transmission) because the framing differs.
import { NBDMAGIC, IHAVEOPT, OPT_REPLY_MAGIC, SIMPLE_REPLY_MAGIC, STRUCTURED_REPLY_MAGIC } from './wire.ts';

export type NbdMessage =
  | { kind: 'greeting'; flags: number }
  | { kind: 'option-reply'; option: number; type: number; data: Buffer }
  | { kind: 'simple-reply'; error: number; cookie: bigint; data: Buffer }
  | { kind: 'chunk'; flags: number; type: number; cookie: bigint; payload: Buffer };

export class NbdProtocolError extends Error {}

/** Largest payload accepted from a server: a block-status chunk for 2 GiB at 512 B is 32 MiB. */
export const MAX_PAYLOAD = 64 * 1024 * 1024;

export class NbdReplyParser {
  phase: 'greeting' | 'options' | 'transmission' = 'greeting';
  private chunks: Buffer[] = [];
  private size = 0;
  /** simple READ replies carry data whose length only the request knows */
  readLengths = new Map<bigint, number>();

  push(b: Buffer): void {
    this.chunks.push(b);
    this.size += b.length;
  }

  private peek(n: number): Buffer | null {
    if (this.size < n) return null;
    if (n === 0) return Buffer.alloc(0);
    if (this.chunks[0].length < n) {
      const all = Buffer.concat(this.chunks);
      this.chunks = [all];
    }
    return this.chunks[0].subarray(0, n);
  }

  private take(n: number): Buffer {
    if (n === 0) return Buffer.alloc(0);
    const b = this.peek(n)!;
    const copy = Buffer.from(b);
    this.chunks[0] = this.chunks[0].subarray(n);
    if (this.chunks[0].length === 0) this.chunks.shift();
    this.size -= n;
    return copy;
  }

  next(): NbdMessage | null {
    switch (this.phase) {
      case 'greeting': {
        const h = this.peek(18);
        if (!h) return null;
        if (h.readBigUInt64BE(0) !== NBDMAGIC) throw new NbdProtocolError('not an NBD server (bad magic)');
        if (h.readBigUInt64BE(8) !== IHAVEOPT) throw new NbdProtocolError('server does not speak the newstyle handshake');
        const flags = h.readUInt16BE(16);
        this.take(18);
        this.phase = 'options';
        return { kind: 'greeting', flags };
      }
      case 'options': {
        const h = this.peek(20);
        if (!h) return null;
        if (h.readBigUInt64BE(0) !== OPT_REPLY_MAGIC) throw new NbdProtocolError('bad option reply magic');
        const len = h.readUInt32BE(16);
        if (len > MAX_PAYLOAD) throw new NbdProtocolError(`option reply of ${len} bytes`);
        if (this.size < 20 + len) return null;
        const head = this.take(20);
        return { kind: 'option-reply', option: head.readUInt32BE(8), type: head.readUInt32BE(12), data: this.take(len) };
      }
      case 'transmission': {
        const m = this.peek(4);
        if (!m) return null;
        const magic = m.readUInt32BE(0);
        if (magic === STRUCTURED_REPLY_MAGIC) {
          const h = this.peek(20);
          if (!h) return null;
          const len = h.readUInt32BE(16);
          if (len > MAX_PAYLOAD) throw new NbdProtocolError(`reply chunk of ${len} bytes`);
          if (this.size < 20 + len) return null;
          const head = this.take(20);
          return { kind: 'chunk', flags: head.readUInt16BE(4), type: head.readUInt16BE(6), cookie: head.readBigUInt64BE(8), payload: this.take(len) };
        }
        if (magic === SIMPLE_REPLY_MAGIC) {
          const h = this.peek(16);
          if (!h) return null;
          const cookie = h.readBigUInt64BE(8);
          const error = h.readUInt32BE(4);
          const dataLen = error === 0 ? (this.readLengths.get(cookie) ?? 0) : 0;
          if (this.size < 16 + dataLen) return null;
          this.take(16);
          return { kind: 'simple-reply', error, cookie, data: this.take(dataLen) };
        }
        throw new NbdProtocolError(`bad reply magic 0x${magic.toString(16)}`);
      }
    }
  }
}
