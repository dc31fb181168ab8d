// Bitmaps: what a change would send (a read-only look), and the change itself, journaled.
import type { ConnectionManager } from '../connections/manager.ts';
import type { Operations } from '../store/operations.ts';
import type { HandlersFor } from '../handlers.ts';
import type { bitmapArgs } from './contract.ts';
import { openTarget, planOn, runBitmapOp, runOnSession } from './run.ts';

export interface BitmapDeps {
  connections: ConnectionManager;
  operations: Operations;
  runtimeDir: string;
}

export function createBitmapHandlers({ connections, operations, runtimeDir }: BitmapDeps): HandlersFor<typeof bitmapArgs> {
  return {
    'bitmap:plan': async ({ target, op }) => {
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
    'bitmap:apply': async ({ target, op }) => {
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
