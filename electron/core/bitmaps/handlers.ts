// Bitmaps: what a change would send (a read-only look), and the change itself, journaled.
import type { ConnectionManager } from '../connections/manager.ts';
import type { Operations } from '../store/operations.ts';
import type { HandlersFor } from '../handlers.ts';
import type { bitmapArgs } from './contract.ts';
import { openTarget, planOn, runBitmapOp, runOnSession } from './run.ts';
import type { BitmapTarget } from './contract.ts';
import { StrataError } from '../errors.ts';
import { openChain } from '../qcow2/chain.ts';
import { ChainContents } from '../checkpoints.ts';
import { bitmapChangeEffects } from './effects.ts';

export interface BitmapDeps {
  connections: ConnectionManager;
  operations: Operations;
  runtimeDir: string;
}

export function createBitmapHandlers({ connections, operations, runtimeDir }: BitmapDeps): HandlersFor<typeof bitmapArgs> {
  /** The chain of `image`, its held layers as their QEMU sees them. */
  async function withChainSeen<T>(image: string, fn: (contents: ChainContents) => T): Promise<T> {
    const chain = openChain(image);
    try {
      const { live } = await connections.heldAndLive(chain.layers.map((l) => l.path));
      return fn(new ChainContents(chain, live));
    } finally {
      chain.close();
    }
  }
  /**
   * A layer file a connected QEMU holds is changed through that QEMU (a second one could not take its
   * lock): the offline target becomes that connection's node. Held read-only only: refused, saying so.
   */
  async function resolve(target: BitmapTarget): Promise<BitmapTarget> {
    if (target.kind !== 'image') return target;
    const held = await connections.holders([target.image]);
    const rw = held.find((h) => !h.readOnly);
    if (rw) return { kind: 'connection', connection: rw.connection, node: rw.node };
    if (held.length) {
      const h = held[0];
      throw new StrataError(
        'E_BUSY',
        `${target.image}: open read-only in ${h.kind === 'daemon' ? "Strata's own daemon" : 'a VM'} (${h.label}), which holds its lock: close that connection, or open the image read-write there, to change its bitmaps`,
        { file: target.image },
      );
    }
    return target;
  }
  return {
    'bitmap:plan': async ({ target: asked, op, chain }) => {
      const target = await resolve(asked);
      let plan;
      if (target.kind === 'connection') {
        const s = connections.session(target.connection, target.node);
        plan = await planOn({ ...s, embedded: false, log: [], close: async () => {} }, op);
      } else {
        const s = await openTarget({ kind: 'image', image: target.image }, { runtimeDir, readOnly: true });
        try {
          plan = await planOn(s, op, { assumeWritable: true });
        } finally {
          await s.close();
        }
      }
      // Weighed against the chain as the chain view shows it (held layers live).
      const effects = chain && asked.kind === 'image' ? await withChainSeen(chain, (contents) => bitmapChangeEffects(contents, asked.image, op)) : [];
      return { summary: plan.summary, qmp: plan.qmp, effects };
    },
    'bitmap:apply': async ({ target: asked, op }) => {
      const target = await resolve(asked);
      const r =
        target.kind === 'connection'
          ? await (async () => {
              const s = connections.session(target.connection, target.node);
              return runOnSession(s, op, operations, s.label);
            })()
          : await runBitmapOp({ kind: 'image', image: target.image }, op, operations, runtimeDir);
      return { summary: r.plan.summary, qmp: r.plan.qmp, effects: [], operation: r.operationId };
    },
  };
}
