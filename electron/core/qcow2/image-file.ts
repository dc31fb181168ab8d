// Read-only, bounded access to one image file. Opened O_RDONLY only: Strata never writes an image
// here, and reading works while QEMU holds the image (QEMU's locks are advisory OFD locks).
import fs from 'node:fs';
import { StrataError, corrupt, pastEnd } from '../errors.ts';

export class ImageFile {
  readonly path: string;
  readonly size: number;
  /** device:inode, for telling the same file under two names apart (backing loops) */
  readonly identity: string;
  private fd: number;

  private constructor(path: string, fd: number, size: number, identity: string) {
    this.path = path;
    this.fd = fd;
    this.size = size;
    this.identity = identity;
  }

  static open(path: string): ImageFile {
    let fd: number;
    try {
      fd = fs.openSync(path, fs.constants.O_RDONLY);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === 'ENOENT') throw new StrataError('E_NOT_FOUND', `${path}: no such file`, { file: path, cause: e });
      throw new StrataError('E_IO', `${path}: cannot open (${code ?? String(e)})`, { file: path, cause: e });
    }
    try {
      const st = fs.fstatSync(fd);
      if (st.isDirectory()) throw new StrataError('E_BAD_INPUT', `${path}: is a directory, not an image`, { file: path });
      // Block devices report size 0 through fstat; measure them by seeking is not available in Node,
      // so treat any non-regular file as unsupported rather than guess.
      if (!st.isFile()) throw new StrataError('E_UNSUPPORTED', `${path}: not a regular file`, { file: path });
      return new ImageFile(path, fd, st.size, `${st.dev}:${st.ino}`);
    } catch (e) {
      fs.closeSync(fd);
      throw e;
    }
  }

  /** Exactly `length` bytes at `offset`, or E_CORRUPT naming what was being read. */
  read(offset: number, length: number, what: string): Buffer {
    const buf = Buffer.allocUnsafe(length);
    this.readInto(buf, offset, length, what);
    return buf;
  }

  /**
   * `length` bytes at `offset`, zeroes where the file ends early: how QEMU's block layer reads
   * metadata past the end of an image file. Only for lengths already bounded by the caller.
   */
  readPadded(offset: number, length: number, what: string): Buffer {
    const buf = Buffer.alloc(length);
    const have = Math.max(0, Math.min(length, this.size - offset));
    if (have > 0) this.readInto(buf, offset, have, what);
    return buf;
  }

  readInto(buf: Buffer, offset: number, length: number, what: string): void {
    if (!Number.isSafeInteger(offset) || offset < 0 || offset + length > this.size) {
      throw pastEnd(this.path, offset, `${what} (${length} bytes) lies past the end of the file (${this.size} bytes)`);
    }
    let done = 0;
    while (done < length) {
      let n: number;
      try {
        n = fs.readSync(this.fd, buf, done, length - done, offset + done);
      } catch (e) {
        throw new StrataError('E_IO', `${this.path}: read failed at offset ${offset + done}: ${(e as Error).message}`, {
          file: this.path,
          offset: offset + done,
          cause: e,
        });
      }
      if (n === 0) throw pastEnd(this.path, offset + done, `${what}: file ended early`);
      done += n;
    }
  }

  close(): void {
    if (this.fd >= 0) {
      fs.closeSync(this.fd);
      this.fd = -1;
    }
  }
}

/** A 64-bit big-endian field as a safe JS number, or E_CORRUPT. */
export function u64(buf: Buffer, at: number, file: string, fileOffset: number, what: string): number {
  const hi = buf.readUInt32BE(at);
  const lo = buf.readUInt32BE(at + 4);
  if (hi >= 0x200000) throw corrupt(file, fileOffset, `${what} is beyond 2^53 (0x${hi.toString(16)}${lo.toString(16).padStart(8, '0')})`);
  return hi * 0x100000000 + lo;
}
