// Bitmaps: what a change would send (a read-only look), and the change itself, journaled.
import type { ConnectionManager } from '../connections/manager.ts';
import type { Operations } from '../store/operations.ts';
import type { HandlersFor } from '../handlers.ts';
import type { bitmapArgs } from './contract.ts';
import { openTarget, planOn, runBitmapOp, runOnSession } from './run.ts';
import type { BitmapTarget } from './contract.ts';
import { StrataError } from '../errors.ts';

export interface BitmapDeps {
  connections: ConnectionManager;
  operations: Operations;
  runtimeDir: string;
}

export function createBitmapHandlers({ connections, operations, runtimeDir }: BitmapDeps): HandlersFor<typeof bitmapArgs> {
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
    'bitmap:plan': async ({ target: asked, op }) => {
      const target = await resolve(asked);
      if (target.kind === 'connection') {
        const s = connections.session(target.connection, target.node);
        const plan = await planOn({ ...s, embedded: false, log: [], close: async () => {} }, op);
        return { summary: plan.summary, qmp: plan.qmp };
      }
      const s = await openTarget({ kind: 'image', image: target.image }, { runtimeDir, readOnly: true });
      try {
        const plan = await planOn(s, op, { assumeWritable: true });
        return { summary: plan.summary, qmp: plan.qmp };
      } finally {
        await s.close();
      }
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
      return { summary: r.plan.summary, qmp: r.plan.qmp, operation: r.operationId };
    },
  };
}
