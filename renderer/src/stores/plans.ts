// Multi-step plans (e.g. commit with the base's bitmaps disabled), kept current by plan:changed:
// started from the UI, or finished by the core after a restart (resolution says how).
import { defineStore } from 'pinia';
import { computed, ref } from 'vue';
import type { PlanInfo, PlanPreview, PlanRequest } from '../../../electron/core/contract';
import { call } from '../api/client';
import { ApiError } from '../api/api-error';
import { useNavStore } from './nav';

export const usePlansStore = defineStore('plans', () => {
  const plans = ref<Record<number, PlanInfo>>({});
  const error = ref<ApiError | null>(null);
  const list = computed(() => Object.values(plans.value).sort((a, b) => b.id - a.id));
  /** plans the core finished after a restart, for a notice to the user */
  const recovered = computed(() => list.value.filter((p) => p.resolution && /after a restart/.test(p.resolution)));
  /** the notice about recovered plans is shown once per window */
  let recoveredNoticed = false;

  function put(p: PlanInfo): void {
    plans.value = { ...plans.value, [p.id]: p };
  }

  async function load(): Promise<void> {
    try {
      for (const p of await call('history:plans', { limit: 100 })) put(p);
      error.value = null;
      noticeRecovered();
    } catch (e) {
      error.value = ApiError.from(e);
    }
  }

  function noticeRecovered(): void {
    const r = recovered.value;
    if (recoveredNoticed || !r.length) return;
    recoveredNoticed = true;
    const text = `After a restart Strata finished ${r.length} plan${r.length === 1 ? '' : 's'}: ${r.map((p) => p.resolution).join(' · ')}`;
    useNavStore().notify(text, 'info', 12000);
  }

  /** What a plan would do, laid out from what QEMU shows now; changes nothing. */
  async function preview(req: PlanRequest): Promise<PlanPreview | null> {
    error.value = null;
    try {
      return await call('plan:preview', req);
    } catch (e) {
      error.value = ApiError.from(e);
      return null;
    }
  }

  async function start(req: PlanRequest): Promise<PlanInfo | null> {
    error.value = null;
    try {
      const p = await call('plan:start', req);
      put(p);
      return p;
    } catch (e) {
      error.value = ApiError.from(e);
      return null;
    }
  }

  return { plans, error, list, recovered, put, load, preview, start };
});
