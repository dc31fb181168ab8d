// Typed errors. Every error names the file (or command) it is about, so the CLI can print one line
// and the IPC/WebSocket wrapper can carry {code, message} across a boundary that loses classes.

export type StrataErrorCode =
  | 'E_NOT_FOUND' // a path does not exist
  | 'E_IO' // the OS refused a read
  | 'E_NOT_QCOW2' // not an image we understand (bad magic) where qcow2 was required
  | 'E_CORRUPT' // structure points outside the file, overlaps, or breaks a format rule
  | 'E_UNSUPPORTED' // valid qcow2, but a feature we refuse rather than misread (encryption, external data)
  | 'E_BACKING_MISSING'
  | 'E_BACKING_LOOP'
  | 'E_BACKING_PROTOCOL' // json:/nbd:/... backing strings: not a local file
  | 'E_NO_BITMAP'
  | 'E_NO_LAYER'
  | 'E_CHECKPOINT_UNKNOWN' // the answer cannot be known (inconsistent bitmap, gap, ...)
  | 'E_BAD_INPUT' // bad argument from a user or a client
  | 'E_BUSY' // not now: something in QEMU must finish first
  | 'E_TOOL' // an external QEMU tool failed
  | 'E_QMP_CONNECT' // the monitor socket could not be reached
  | 'E_QMP_NEGOTIATION' // greeting or qmp_capabilities failed
  | 'E_QMP_EXECUTE' // QEMU answered a command with an error (carries its class)
  | 'E_QMP_INTERRUPTED' // the connection ended while a call was pending
  | 'E_QMP_STATE' // a call before connect or after close
  | 'E_QMP_PROTOCOL' // garbage, a reply without id, a line over the limit
  | 'E_QMP_TIMEOUT'
  | 'E_INTERNAL';

export class StrataError extends Error {
  readonly code: StrataErrorCode;
  readonly file?: string;
  readonly offset?: number;
  constructor(code: StrataErrorCode, message: string, opts: { file?: string; offset?: number; cause?: unknown } = {}) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = 'StrataError';
    this.code = code;
    this.file = opts.file;
    this.offset = opts.offset;
  }
}

export function corrupt(file: string, offset: number, what: string): StrataError {
  return new StrataError('E_CORRUPT', `${file}: corrupt image at offset ${offset}: ${what}`, { file, offset });
}

/** What a user can do about an image whose tables point past the end of the file. */
export const TRUNCATED_ADVICE =
  'the file is shorter than its tables say: it was cut off (copy interrupted, disk full); restore it from a backup, or recover what is readable with `qemu-img convert`';

/** A structure that lies (partly) past the end of the file: E_CORRUPT with the offset and what to do. */
export function pastEnd(file: string, offset: number, what: string): StrataError {
  return new StrataError('E_CORRUPT', `${file}: corrupt image at offset ${offset}: ${what}; ${TRUNCATED_ADVICE}`, { file, offset });
}

/**
 * A header or table field QEMU refuses when it opens the image: names the file, the field and the
 * field's byte offset, e.g. `x.qcow2: header field backing_file_size (offset 16) is 2000, QEMU's limit is 1023`.
 */
export function badField(file: string, field: string, offset: number, what: string, code: StrataErrorCode = 'E_CORRUPT'): StrataError {
  return new StrataError(code, `${file}: ${field} (offset ${offset}) ${what}`, { file, offset });
}

export function unsupported(file: string, what: string): StrataError {
  return new StrataError('E_UNSUPPORTED', `${file}: unsupported: ${what}`, { file });
}

export function isStrataError(e: unknown): e is StrataError {
  return e instanceof StrataError;
}

/** A plain {code, message} for transports that cannot carry classes. */
export function toWireError(e: unknown): { code: string; message: string } {
  if (e instanceof StrataError) return { code: e.code, message: e.message };
  const err = e as { message?: unknown };
  return { code: 'E_INTERNAL', message: typeof err?.message === 'string' ? err.message : String(e) };
}
