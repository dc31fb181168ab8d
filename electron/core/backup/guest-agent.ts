// The QEMU guest agent, only as far as a backup needs it: freeze the guest's filesystems around
// the transaction that starts the backup, and always thaw them again. The protocol is QMP-like JSON
// lines on a UNIX socket, without greeting or capabilities; guest-sync first drops stale replies.
import net from 'node:net';
import { StrataError } from '../errors.ts';

class Agent {
  private buf = '';
  private waiting: ((line: any) => void) | null = null;
  private constructor(private sock: net.Socket, private where: string) {
    sock.setEncoding('utf8');
    sock.on('data', (d: string) => {
      this.buf += d;
      let i;
      while ((i = this.buf.indexOf('\n')) >= 0) {
        const line = this.buf.slice(0, i).trim();
        this.buf = this.buf.slice(i + 1);
        if (!line) continue;
        let doc: any;
        try {
          doc = JSON.parse(line);
        } catch {
          continue;
        }
        this.waiting?.(doc);
      }
    });
  }

  static connect(where: string): Promise<Agent> {
    return new Promise((resolve, reject) => {
      const sock = net.createConnection({ path: where });
      sock.once('connect', () => resolve(new Agent(sock, where)));
      sock.once('error', (e) => reject(new StrataError('E_QMP_CONNECT', `${where}: cannot reach the guest agent: ${e.message}`, { file: where })));
    });
  }

  /** One command; with `match`, replies not matching are skipped (stale ones after a sync). */
  call(execute: string, args?: Record<string, unknown>, match: (doc: any) => boolean = () => true, timeoutMs = 10000): Promise<any> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiting = null;
        reject(new StrataError('E_QMP_TIMEOUT', `${this.where}: the guest agent did not answer ${execute} within ${timeoutMs} ms`, { file: this.where }));
      }, timeoutMs);
      this.waiting = (doc) => {
        if (!match(doc)) return;
        clearTimeout(timer);
        this.waiting = null;
        if (doc.error) reject(new StrataError('E_QMP_EXECUTE', `${this.where}: guest agent ${execute}: ${doc.error.desc ?? JSON.stringify(doc.error)}`, { file: this.where }));
        else resolve(doc.return);
      };
      this.sock.write(JSON.stringify(args ? { execute, arguments: args } : { execute }) + '\n');
    });
  }

  close(): void {
    this.sock.destroy();
  }
}

/** Runs `fn` with the guest frozen (guest-fsfreeze-freeze), thawing whatever happens. */
export async function withFrozenGuest<T>(socket: string, fn: () => Promise<T>): Promise<T> {
  const agent = await Agent.connect(socket);
  try {
    const id = Math.floor(Math.random() * 2 ** 31);
    await agent.call('guest-sync', { id }, (d) => d.return === id);
    await agent.call('guest-fsfreeze-freeze');
    try {
      return await fn();
    } finally {
      await agent.call('guest-fsfreeze-thaw', undefined, () => true, 30000);
    }
  } finally {
    agent.close();
  }
}
