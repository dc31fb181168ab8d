// The shape of one benchmark's result (printed, and written to .bench-cache/last-run.json).
export type Status = 'PASS' | 'MISS' | 'ERROR';

export interface Result {
  id: number;
  name: string;
  target: string;
  status: Status;
  strataMs: number | null;
  qemuMs: number | null;
  /** Strata time / QEMU time (< 1: Strata faster) */
  ratio: number | null;
  /** QEMU time / Strata time */
  speedup: number | null;
  strataRuns: number[];
  qemuRuns: number[];
  notes: string[];
  extra: Record<string, unknown>;
  error?: string;
  /** what the two sides are, when they are not Strata and a QEMU tool (printed instead of Strata/QEMU) */
  labels?: { strata: string; qemu: string };
}

export function newResult(id: number, name: string, target: string): Result {
  return { id, name, target, status: 'ERROR', strataMs: null, qemuMs: null, ratio: null, speedup: null, strataRuns: [], qemuRuns: [], notes: [], extra: {} };
}

