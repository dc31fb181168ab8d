// Scan history per image, newest first, kept current by chain:scanned events.
import { defineStore } from 'pinia';
import { reactive, ref } from 'vue';
import type { ScanRecord } from '../../../electron/core/contract';
import { call } from '../api/client';
import { ApiError } from '../api/api-error';

export const HISTORY_LIMIT = 200;

export const useHistoryStore = defineStore('history', () => {
  const scans = ref<Record<string, ScanRecord[]>>({});
  const status = reactive<Record<string, { loading: boolean; error: ApiError | null }>>({});

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

  function addScan(rec: ScanRecord): void {
    const list = scans.value[rec.image];
    // Only images whose history was loaded are kept current; others load fresh when opened.
    if (!list || list.some((s) => s.id === rec.id)) return;
    scans.value = { ...scans.value, [rec.image]: [rec, ...list].slice(0, HISTORY_LIMIT) };
  }

  function reloadLoaded(): void {
    for (const image of Object.keys(scans.value)) void load(image);
  }

  return { scans, status, load, addScan, reloadLoaded };
});
