// Snapshot and stream on a chain, per image: the core's plan for what the user asked (chain-op:plan,
// which writes nothing), then the plan applied once the user confirmed it (chain-op:apply). After an
// apply the chain is read again (a snapshot's new top joins the workspace and is shown).
import { defineStore } from 'pinia';
import { reactive } from 'vue';
import type { ChainOpReport, ChainOpRequest } from '../../../electron/core/contract';
import { call } from '../api/client';
import { ApiError } from '../api/api-error';
import { useChainsStore } from './chains';
import { useWorkspaceStore } from './workspace';

export const useChainOpsStore = defineStore('chain-ops', () => {
  const plans = reactive<Record<string, ChainOpReport | null>>({});
  const errors = reactive<Record<string, ApiError | null>>({});
  const busy = reactive<Record<string, 'planning' | 'applying' | null>>({});

  async function plan(req: ChainOpRequest): Promise<void> {
    busy[req.image] = 'planning';
    errors[req.image] = null;
    plans[req.image] = null;
    try {
      plans[req.image] = await call('chain-op:plan', req);
    } catch (e) {
      errors[req.image] = ApiError.from(e);
    } finally {
      busy[req.image] = null;
    }
  }

  async function apply(req: ChainOpRequest): Promise<ChainOpReport | null> {
    busy[req.image] = 'applying';
    errors[req.image] = null;
    try {
      const r = await call('chain-op:apply', req);
      plans[req.image] = null;
      await useChainsStore().inspect(r.active);
      if (r.active !== req.image) useWorkspaceStore().select(r.active);
      return r;
    } catch (e) {
      errors[req.image] = ApiError.from(e);
      return null;
    } finally {
      busy[req.image] = null;
    }
  }

  function dismiss(image: string): void {
    plans[image] = null;
    errors[image] = null;
  }

  return { plans, errors, busy, plan, apply, dismiss };
});
