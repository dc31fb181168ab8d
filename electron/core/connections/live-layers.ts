// The layers of a chain that a connected QEMU holds open, read as that QEMU sees them: its bitmaps
// (states from query-named-block-nodes, contents over NBD) and what each layer allocates. While a
// QEMU holds a layer read-write its bitmaps read in-use on disk and their contents there are stale,
// so the checkpoint rules must be fed these instead (checkpoints.ts, LiveLayerFacts).
import path from 'node:path';
import type { QmpClient } from '../qmp/client.ts';
import { nodeBitmaps, queryNamedNodes } from '../qmp/named-nodes.ts';
import { readLiveNode } from '../bitmaps/live-contents.ts';
import { isStrataTemporary } from '../bitmaps/temporary.ts';
import type { LiveLayerFacts } from '../checkpoints.ts';
import type { Holder } from './manager.ts';

export function holderWords(h: Pick<Holder, 'kind' | 'label'>): string {
  return h.kind === 'daemon' ? 'Strata’s daemon' : `the QEMU at ${path.basename(h.label)}`;
}

/** One holder per file: a read-write one wins (it is the one whose states move). */
export function pickHolders(held: Holder[]): Holder[] {
  const byFile = new Map<string, Holder>();
  for (const h of held) {
    const had = byFile.get(h.file);
    if (!had || (had.readOnly && !h.readOnly)) byFile.set(h.file, h);
  }
  return [...byFile.values()];
}

/** The live facts of one held layer; a failure is kept as `error`, never thrown. */
export async function readHeldLayer(qmp: QmpClient, h: Holder, runtimeDir: string): Promise<LiveLayerFacts> {
  const facts: LiveLayerFacts = { holder: holderWords(h), connection: h.connection, bitmaps: [], allocation: null, error: null };
  try {
    const nodes = await queryNamedNodes(qmp, h.label);
    const node = nodes.find((n) => n['node-name'] === h.node);
    if (!node) throw new Error(`node '${h.node}' is gone`);
    const listed = nodeBitmaps(node).filter((b) => !isStrataTemporary(b.name));
    const readable = listed.filter((b) => !b.inconsistent && !b.busy).map((b) => b.name);
    const got = await readLiveNode(qmp, h.node, { bitmaps: readable, allocation: true }, { runtimeDir, where: h.label });
    facts.allocation = got.allocation;
    facts.bitmaps = listed.map((b) => ({ ...b, extents: got.bitmaps.find((x) => x.name === b.name)?.extents ?? null }));
  } catch (e) {
    facts.error = (e as Error).message;
    facts.bitmaps = [];
    facts.allocation = null;
  }
  return facts;
}
