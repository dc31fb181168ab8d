// Buffered stdout writing that can stream millions of extents without building one huge string,
// and that stops quietly when the reader goes away (strata ... | head).
import fs from 'node:fs';

const pause = new Int32Array(new SharedArrayBuffer(4));

export class Out {
  private chunks: string[] = [];
  private size = 0;

  write(s: string): void {
    this.chunks.push(s);
    this.size += s.length;
    if (this.size > 1 << 20) this.flush();
  }

  flush(): void {
    if (this.chunks.length === 0) return;
    let buf = Buffer.from(this.chunks.join(''));
    this.chunks = [];
    this.size = 0;
    while (buf.length > 0) {
      try {
        buf = buf.subarray(fs.writeSync(1, buf));
      } catch (e) {
        const code = (e as NodeJS.ErrnoException).code;
        if (code === 'EPIPE') process.exit(0);
        // A parent may hand us a non-blocking pipe: wait briefly and write the rest.
        if (code === 'EAGAIN') Atomics.wait(pause, 0, 0, 2);
        else throw e;
      }
    }
  }
}
