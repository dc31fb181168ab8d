// Errors from the core keep their code across the transport, so the UI can explain them in plain words.
import type { WireError } from '../../../electron/core/contract';
import { TRUNCATED_ADVICE } from '../../../electron/core/errors';

export class ApiError extends Error {
  readonly code: string;
  constructor(code: string, message: string) {
    super(message);
    this.name = 'ApiError';
    this.code = code;
  }

  static from(e: unknown): ApiError {
    if (e instanceof ApiError) return e;
    const w = e as Partial<WireError> | null;
    if (w && typeof w.code === 'string' && typeof w.message === 'string') return new ApiError(w.code, w.message);
    const msg = e instanceof Error ? e.message : String(e);
    return new ApiError('E_INTERNAL', msg);
  }
}

/** Short human titles for the core's error codes; the message itself always names the file. */
const TITLES: Record<string, string> = {
  E_NOT_FOUND: 'File not found',
  E_IO: 'Could not read the file',
  E_NOT_QCOW2: 'Not a disk image Strata understands',
  E_CORRUPT: 'The image looks corrupt',
  E_UNSUPPORTED: 'Unsupported image feature',
  E_BACKING_MISSING: 'Backing file missing',
  E_BACKING_LOOP: 'The backing chain loops',
  E_BACKING_PROTOCOL: 'Backing file is not a local file',
  E_NO_BITMAP: 'No such bitmap',
  E_NO_LAYER: 'No such layer',
  E_CHECKPOINT_UNKNOWN: 'Changes cannot be known',
  E_BAD_INPUT: 'Not accepted',
  E_TOOL: 'A QEMU tool failed',
  E_BUSY: 'In use: not now',
  E_INTERNAL: 'Unexpected error',
  E_DISCONNECTED: 'Not connected to the Strata core',
  E_QMP_CONNECT: 'Cannot reach the QMP socket',
  E_QMP_NEGOTIATION: 'Not a QMP monitor',
  E_QMP_EXECUTE: 'QEMU refused the command',
  E_QMP_INTERRUPTED: 'The connection to QEMU ended',
  E_QMP_STATE: 'Not connected to this QEMU',
  E_QMP_PROTOCOL: 'QEMU answered something unexpected',
  E_QMP_TIMEOUT: 'QEMU did not answer in time',
};

export function errorTitle(code: string): string {
  return TITLES[code] ?? 'Error';
}

/** The core's message, and the advice it ends with when it carries one (a cut-off image). */
export function splitAdvice(message: string): { message: string; advice: string | null } {
  if (!message.endsWith(TRUNCATED_ADVICE)) return { message, advice: null };
  const head = message.slice(0, -TRUNCATED_ADVICE.length).replace(/[;,.\s]+$/, '');
  const advice = TRUNCATED_ADVICE.charAt(0).toUpperCase() + TRUNCATED_ADVICE.slice(1) + '.';
  return { message: head, advice };
}
