// The seed thread's plan: disable the recording bitmaps of the base, commit the top into it, and
// re-enable them. Disabling first keeps each base bitmap exactly as it was (no over-approximation
// from the commit's writes); the list of disabled bitmaps lives in the journal, so it outlives a crash.
import type { QmpClient } from '../qmp/client.ts';
import { queryNamedNodes } from '../qmp/named-nodes.ts';
import type { NewPlan, PlanTarget } from './types.ts';
import { StrataError } from '../errors.ts';

export async function planCommitWithBitmaps(qmp: QmpClient, target: PlanTarget, device: string, jobId: string, opts: { speed?: number } = {}): Promise<NewPlan> {
  const nodes = await queryNamedNodes(qmp);
  const edges = (await qmp.execute<any>('x-debug-query-block-graph')) as { nodes: { id: number; name: string }[]; edges: { parent: number; child: number; name: string }[] };
  const idOf = new Map(edges.nodes.map((n) => [n.name, n.id]));
  const nameOf = new Map(edges.nodes.map((n) => [n.id, n.name]));
  const backingOf = (node: string) => {
    const e = edges.edges.find((x) => x.parent === idOf.get(node) && x.name === 'backing');
    return e ? nameOf.get(e.child) ?? null : null;
  };
  const base = backingOf(device);
  if (!base) throw new StrataError('E_BAD_INPUT', `node '${device}' has no backing node to commit into`);
  const baseNode = nodes.find((n) => n['node-name'] === base);
  // QEMU lists a node's bitmaps newest first; steps go in creation order, as a user reads them.
  const recording = ((baseNode?.['dirty-bitmaps'] ?? []) as any[])
    .filter((b) => b.name && b.recording && b.persistent)
    .map((b) => b.name as string)
    .reverse();
  const dis = recording.map((name) => ({
    label: `disable '${name}' in ${baseNode.file}`,
    spec: {
      kind: 'qmp' as const,
      command: { execute: 'block-dirty-bitmap-disable', arguments: { node: base, name } },
      undo: { execute: 'block-dirty-bitmap-enable', arguments: { node: base, name } },
      check: { bitmap: { node: base, name, recording: false } },
    },
  }));
  const en = recording.map((name) => ({
    label: `re-enable '${name}' in ${baseNode.file}`,
    spec: {
      kind: 'qmp' as const,
      command: { execute: 'block-dirty-bitmap-enable', arguments: { node: base, name } },
      undo: { execute: 'block-dirty-bitmap-disable', arguments: { node: base, name } },
      check: { bitmap: { node: base, name, recording: true } },
    },
  }));
  return {
    kind: 'commit-with-bitmaps',
    summary: `commit ${device} into ${baseNode.file}, with ${recording.length ? recording.map((n) => `'${n}'`).join(', ') : 'no recording bitmaps'} disabled during the commit`,
    target,
    steps: [
      ...dis,
      {
        label: `commit ${device} into its backing (active commit, completed at READY)`,
        spec: { kind: 'job', jobId, start: { execute: 'block-commit', arguments: { device, ...(opts.speed ? { speed: opts.speed } : {}) } }, completeAtReady: true },
      },
      ...en,
    ],
  };
}
