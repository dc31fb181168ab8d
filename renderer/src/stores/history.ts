// Scan history per image, newest first, kept current by chain:scanned events; and, for the History
// view, the activity feed the core merges (scans, jobs, bitmap changes and plans, newest first),
// kept current by the events that add to it.
import { defineStore } from 'pinia';
import { reactive, ref } from 'vue';
import type { ActivityEntry, PlanInfo, ScanRecord } from '../../../electron/core/contract';
import { call } from '../api/client';
import { ApiError } from '../api/api-error';

export const HISTORY_LIMIT = 200;

export const useHistoryStore = defineStore('history', () => {
  const scans = ref<Record<string, ScanRecord[]>>({});
  const status = reactive<Record<string, { loading: boolean; error: ApiError | null }>>({});
  /** the History view's feed, null until loaded */
  const activity = ref<ActivityEntry[] | null>(null);
  const activityError = ref<ApiError | null>(null);

  async function load(image: string): Promise<void> {
    status[image] = { loading: true, error: null };
    try {
      const list = await call('history:scans', { image, limit: HISTORY_LIMIT });
      scans.value = { ...scans.value, [image]: list };
      status[image] = { loading: false, error: null };
    } catch (e) {
      status[image] = { loading: false, error: ApiError.from(e) };
    }
  }

  let inFlight: Promise<void> | null = null;
  let again = false;
  /** Reads the feed; a call while one is under way reads it once more after it. */
  function loadActivity(): Promise<void> {
    if (inFlight) {
      again = true;
      return inFlight;
    }
    inFlight = (async () => {
      do {
        again = false;
        try {
          activity.value = await call('history:activity', { limit: HISTORY_LIMIT });
          activityError.value = null;
        } catch (e) {
          activityError.value = ApiError.from(e);
        }
      } while (again);
      inFlight = null;
    })();
    return inFlight;
  }

  /** Re-reads the feed if it is on screen (a job changed state, a bitmap change was applied). */
  function refreshActivity(): void {
    if (activity.value) void loadActivity();
  }

  function addScan(rec: ScanRecord): void {
    const feed = activity.value;
    if (feed && !feed.some((e) => e.kind === 'scan' && e.scan.id === rec.id)) activity.value = [{ kind: 'scan' as const, at: rec.scannedAt, scan: rec }, ...feed];
    const list = scans.value[rec.image];
    // Only images whose history was loaded are kept current; others load fresh when opened.
    if (!list || list.some((s) => s.id === rec.id)) return;
    scans.value = { ...scans.value, [rec.image]: [rec, ...list].slice(0, HISTORY_LIMIT) };
  }

  /** A plan changed (pushed whole): its entry shows the news at once. */
  function putPlan(p: PlanInfo): void {
    const feed = activity.value;
    if (!feed) return;
    const i = feed.findIndex((e) => e.kind === 'plan' && e.plan.id === p.id);
    if (i < 0) activity.value = [{ kind: 'plan' as const, at: p.createdAt, plan: p }, ...feed];
    else activity.value = feed.map((e, k) => (k === i ? { kind: 'plan' as const, at: p.createdAt, plan: p } : e));
  }

  /** A bitmap change was applied: its journal line is new. */
  function onOperation(): void {
    refreshActivity();
  }

  function reloadLoaded(): void {
    for (const image of Object.keys(scans.value)) void load(image);
    refreshActivity();
  }

  return { scans, status, activity, activityError, load, loadActivity, refreshActivity, addScan, putPlan, onOperation, reloadLoaded };
});
