// The QMP command a job start sends, from the contract's JobStartSpec: one function for the core
// (which sends it) and the renderer (which shows it in the confirmation before anything is sent).
// No I/O, nothing but types imported, so the renderer's bundle can take it.
import type { JobStartSpec } from '../contract.ts';

/** Strata's own daemon's top node: the default device. */
export const DEFAULT_DEVICE = 'strata-top';

export function jobStartArguments(spec: JobStartSpec): { type: 'block-stream' | 'block-commit'; arguments: Record<string, unknown> } {
  const device = spec.device || DEFAULT_DEVICE;
  const speed = spec.speed ? { speed: spec.speed } : {};
  if (spec.type === 'block-stream') return { type: 'block-stream', arguments: { device, ...speed } };
  return {
    type: 'block-commit',
    arguments: { device, ...(spec.topNode ? { 'top-node': spec.topNode } : {}), ...(spec.baseNode ? { 'base-node': spec.baseNode } : {}), ...speed },
  };
}

/** The exact command, as the job engine sends it (job-id is chosen when it starts). */
export function jobStartCommand(spec: JobStartSpec, jobId: string): { execute: string; arguments: Record<string, unknown> } {
  const a = jobStartArguments(spec);
  return { execute: a.type, arguments: { ...a.arguments, 'job-id': jobId, 'auto-dismiss': false } };
}
