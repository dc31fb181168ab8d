// The block graph of one QEMU: nodes from query-named-block-nodes {flat: true} (with flat, the
// backing depth fields are always 0), edges from x-debug-query-block-graph.
import type { QmpClient } from '../qmp/client.ts';
import { queryNamedNodes } from '../qmp/named-nodes.ts';
import type { BlockGraph, BlockNodeInfo } from '../contract.ts';

export async function blockGraph(qmp: QmpClient): Promise<BlockGraph> {
  const [nodes, graph] = await Promise.all([
    queryNamedNodes(qmp),
    qmp.execute<{ nodes: { id: number; name: string; type: string }[]; edges: { parent: number; child: number; name: string }[] }>('x-debug-query-block-graph'),
  ]);
  const byId = new Map(graph.nodes.map((n) => [n.id, n.name]));
  const out: BlockNodeInfo[] = nodes.map((n) => ({
    name: n['node-name'],
    driver: n.drv,
    file: n.file,
    readOnly: !!n.ro,
    virtualSize: typeof n.image?.['virtual-size'] === 'number' ? n.image['virtual-size'] : null,
    bitmaps: (n['dirty-bitmaps'] ?? []).map((b: any) => ({
      name: b.name ?? null,
      recording: !!b.recording,
      persistent: !!b.persistent,
      busy: !!b.busy,
      granularity: b.granularity,
      count: b.count,
      inconsistent: b.inconsistent === true,
    })),
  }));
  const names = new Set(out.map((n) => n.name));
  const edges = graph.edges
    .map((e) => ({ parent: byId.get(e.parent) ?? '', child: byId.get(e.child) ?? '', role: e.name }))
    .filter((e) => names.has(e.parent) && names.has(e.child));
  return { nodes: out, edges };
}
