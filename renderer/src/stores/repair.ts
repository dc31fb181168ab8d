// Chain repair, per image: the core's findings with the plan that repairs them (repair:plan, which
// writes nothing), and the plan applied once the user confirmed it (repair:apply). After an apply
// the chain is read again, so the chain view shows what the repair did.
import { defineStore } from 'pinia';
import { reactive } from 'vue';
import type { RepairReport } from '../../../electron/core/contract';
import { call } from '../api/client';
import { ApiError } from '../api/api-error';
import { useChainsStore } from './chains';

export const useRepairStore = defineStore('repair', () => {
  const reports = reactive<Record<string, RepairReport>>({});
  const errors = reactive<Record<string, ApiError | null>>({});
  const busy = reactive<Record<string, 'looking' | 'applying' | null>>({});

  async function look(image: string): Promise<void> {
    busy[image] = 'looking';
    errors[image] = null;
    try {
      reports[image] = await call('repair:plan', { image });
    } catch (e) {
      errors[image] = ApiError.from(e);
    } finally {
      busy[image] = null;
    }
  }

  async function apply(image: string): Promise<RepairReport | null> {
    busy[image] = 'applying';
    errors[image] = null;
    try {
      const r = await call('repair:apply', { image });
      await useChainsStore().inspect(image);
      // What is left to find after the repair (usually nothing).
      reports[image] = await call('repair:plan', { image });
      return r;
    } catch (e) {
      errors[image] = ApiError.from(e);
      return null;
    } finally {
      busy[image] = null;
    }
  }

  return { reports, errors, busy, look, apply };
});
