// A chain's health at a glance, from one scan: what the workspace marks each image with. Pure (the
// renderer uses it on a fresh report too). Never 'ok' while a checkpoint is unknown.
import type { ChainHealth, ChainReport } from '../workspace/contract.ts';

const base = (p: string) => p.slice(p.lastIndexOf('/') + 1);

export function chainHealth(r: Pick<ChainReport, 'layers' | 'checkpoints' | 'missingBacking'>): ChainHealth {
  const problems: string[] = [];
  if (r.missingBacking) problems.push(`backing file ${r.missingBacking.expectedAt} is missing (named by ${base(r.missingBacking.referencedBy)})`);
  for (const l of r.layers) {
    if (l.bitmapsStale) problems.push(`${base(l.path)}: its bitmaps are stale (QEMU would discard them)`);
    for (const w of l.warnings) problems.push(`${base(l.path)}: ${w}`);
  }
  const unknown = r.checkpoints.filter((c) => c.state === 'unknown');
  const unknownWords = unknown.length
    ? [`${unknown.length} of ${r.checkpoints.length} checkpoint${r.checkpoints.length === 1 ? '' : 's'} unknown (${unknown.map((c) => c.name).join(', ')}): ${unknown[0].problems[0] ?? 'cannot be known'}`]
    : [];
  if (problems.length) return { state: 'problem', reasons: [...problems, ...unknownWords] };
  if (unknown.length) return { state: 'unknown', reasons: unknownWords };
  const n = r.checkpoints.length;
  return { state: 'ok', reasons: [n ? `all ${n} checkpoint${n === 1 ? '' : 's'} known` : 'no checkpoints; nothing wrong found'] };
}
