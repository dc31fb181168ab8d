// Snapshot and stream on a chain, per image (offline) or per running disk (a connection's top node):
// the core's plan for what the user asked (chain-op:plan, which writes nothing), then the plan applied
// once the user confirmed it (chain-op:apply). After an apply the chain is read again: offline, a
// snapshot's new top joins the workspace and is shown; live, the connection's block graph is read
// again (not while a finished stream waits for dismissal: loadGraph keeps to that rule).
import { defineStore } from 'pinia';
import { reactive } from 'vue';
import type { ChainOpReport, ChainOpRequest } from '../../../electron/core/contract';
import { call } from '../api/client';
import { ApiError } from '../api/api-error';
import { useChainsStore } from './chains';
import { useWorkspaceStore } from './workspace';
import { useQemuConnectionsStore } from './qemu-connections';

/** What the plans, errors and busy states are kept by: the image, or the connection and node. */
export function chainOpKey(req: { image: string } | { connection: string; node: string }): string {
  return 'image' in req ? req.image : `live:${req.connection}:${req.node}`;
}

export const useChainOpsStore = defineStore('chain-ops', () => {
  const plans = reactive<Record<string, ChainOpReport | null>>({});
  const errors = reactive<Record<string, ApiError | null>>({});
  const busy = reactive<Record<string, 'planning' | 'applying' | null>>({});

  async function plan(req: ChainOpRequest): Promise<void> {
    const k = chainOpKey(req);
    busy[k] = 'planning';
    errors[k] = null;
    plans[k] = null;
    try {
      plans[k] = await call('chain-op:plan', req);
    } catch (e) {
      errors[k] = ApiError.from(e);
    } finally {
      busy[k] = null;
    }
  }

  async function apply(req: ChainOpRequest): Promise<ChainOpReport | null> {
    const k = chainOpKey(req);
    busy[k] = 'applying';
    errors[k] = null;
    try {
      const r = await call('chain-op:apply', req);
      plans[k] = null;
      if ('connection' in req) await useQemuConnectionsStore().loadGraph(req.connection);
      else {
        await useChainsStore().inspect(r.active);
        if (r.active !== req.image) useWorkspaceStore().select(r.active);
      }
      return r;
    } catch (e) {
      errors[k] = ApiError.from(e);
      return null;
    } finally {
      busy[k] = null;
    }
  }

  function dismiss(key: string): void {
    plans[key] = null;
    errors[key] = null;
  }

  return { plans, errors, busy, plan, apply, dismiss };
});
