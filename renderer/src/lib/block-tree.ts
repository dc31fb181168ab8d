// A QEMU block graph as the user thinks of it: one chain per disk, top first, following the backing
// edges (and the file edge of filter drivers such as the ones jobs insert), with each layer's
// protocol node folded into it. Nodes that fit nowhere are listed apart, so nothing is hidden.
import type { BlockGraph, BlockNodeInfo } from '../../../electron/core/contract';

/** Drivers that sit on top of a format node and pass I/O through their file (or backing) child. */
const FILTERS = new Set(['throttle', 'copy-on-read', 'preallocate', 'compress', 'blklogwrites', 'blkverify', 'blkdebug', 'mirror_top', 'commit_top', 'snapshot-access', 'cor']);
/** Drivers that only reach storage: shown folded into the layer above them. */
const PROTOCOLS = new Set(['file', 'host_device', 'host_cdrom', 'nbd', 'iscsi', 'rbd', 'ssh', 'http', 'https', 'ftp', 'ftps', 'nvme', 'gluster', 'null-co', 'null-aio', 'io_uring']);

export const STRATA_TOP = 'strata-top';

export interface TreeLayer {
  node: BlockNodeInfo;
  /** 'filter' nodes pass I/O through; they cannot be stream or commit endpoints */
  kind: 'format' | 'filter';
  /** protocol children (role 'file' and others), folded into the layer */
  children: { role: string; node: BlockNodeInfo }[];
}

export interface DiskTree {
  /** the root node: what a job's `device` names */
  root: string;
  /** top first */
  layers: TreeLayer[];
}

export interface GraphTree {
  disks: DiskTree[];
  /** named nodes no disk reached */
  others: BlockNodeInfo[];
}

export function isProtocol(n: BlockNodeInfo): boolean {
  return PROTOCOLS.has(n.driver);
}

export function graphTree(g: BlockGraph): GraphTree {
  const byName = new Map(g.nodes.map((n) => [n.name, n]));
  const incoming = new Set(g.edges.map((e) => e.child));
  const out = (p: string) => g.edges.filter((e) => e.parent === p);
  const seen = new Set<string>();

  const roots = g.nodes
    .filter((n) => !incoming.has(n.name) && !(isProtocol(n) && out(n.name).length === 0 && n.bitmaps.length === 0))
    .sort((a, b) => rank(a) - rank(b) || a.name.localeCompare(b.name));

  const disks: DiskTree[] = [];
  for (const r of roots) {
    const layers: TreeLayer[] = [];
    let cur: BlockNodeInfo | undefined = r;
    while (cur && !seen.has(cur.name)) {
      seen.add(cur.name);
      const edges = out(cur.name);
      const backing = edges.find((e) => e.role === 'backing');
      const filter = FILTERS.has(cur.driver);
      // A filter's "next" is its file child when it has no backing child.
      const through = !backing && filter ? edges.find((e) => e.role === 'file' && !isProtocol(byName.get(e.child)!)) : undefined;
      const next = backing ?? through;
      const children = edges
        .filter((e) => e !== next)
        .map((e) => ({ role: e.role, node: byName.get(e.child)! }))
        .filter((c) => c.node && !seen.has(c.node.name) && isProtocol(c.node));
      for (const c of children) seen.add(c.node.name);
      layers.push({ node: cur, kind: filter ? 'filter' : 'format', children });
      cur = next ? byName.get(next.child) : undefined;
    }
    if (layers.length) disks.push({ root: r.name, layers });
  }
  return { disks, others: g.nodes.filter((n) => !seen.has(n.name)) };
}

function rank(n: BlockNodeInfo): number {
  if (n.name === STRATA_TOP) return 0;
  if (isProtocol(n)) return 2;
  return 1;
}

/** The layers a job can name (format nodes), top first. */
export function formatLayers(d: DiskTree): BlockNodeInfo[] {
  return d.layers.filter((l) => l.kind === 'format').map((l) => l.node);
}

/** The disk tree whose layers include this node, and the layers below it (for merge sources). */
export function diskOf(t: GraphTree, node: string): DiskTree | null {
  return t.disks.find((d) => d.layers.some((l) => l.node.name === node)) ?? null;
}

/** QEMU names a node it was not given a name for '#block123': such names change every run. */
export function isAutoNamed(name: string): boolean {
  return name.startsWith('#');
}

/** A node's name as a secondary detail: its own name, or that QEMU made one up. */
export function nodeNameLabel(name: string): string {
  return isAutoNamed(name) ? 'auto-named node' : `node ${name}`;
}

/**
 * A node's bitmaps in creation order, as the chain view lists them: query-named-block-nodes lists
 * dirty-bitmaps newest first (measured on QEMU 7.2), so reversed.
 */
export function bitmapsInCreationOrder<T>(bitmaps: readonly T[]): T[] {
  return [...bitmaps].reverse();
}

/** A node's short name for people: QEMU's generated '#block123' names change every run, files do not. */
export function nodeLabel(n: BlockNodeInfo): string {
  const file = n.file ? n.file.slice(n.file.lastIndexOf('/') + 1) : '';
  return isAutoNamed(n.name) && file ? file : n.name;
}
