// Scan history per image, newest first, kept current by chain:scanned events; and, for the History
// view, every scan of every image plus the journal of bitmap changes.
import { defineStore } from 'pinia';
import { reactive, ref } from 'vue';
import type { OperationInfo, ScanRecord } from '../../../electron/core/contract';
import { call } from '../api/client';
import { ApiError } from '../api/api-error';

export const HISTORY_LIMIT = 200;

export const useHistoryStore = defineStore('history', () => {
  const scans = ref<Record<string, ScanRecord[]>>({});
  const status = reactive<Record<string, { loading: boolean; error: ApiError | null }>>({});
  /** every image's scans (History view), null until loaded */
  const allScans = ref<ScanRecord[] | null>(null);
  const operations = ref<OperationInfo[] | null>(null);
  const allError = ref<ApiError | null>(null);

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

  async function loadAll(): Promise<void> {
    try {
      const [s, o] = await Promise.all([call('history:scans', { limit: HISTORY_LIMIT }), call('history:operations', { limit: HISTORY_LIMIT })]);
      allScans.value = s;
      operations.value = o;
      allError.value = null;
    } catch (e) {
      allError.value = ApiError.from(e);
    }
  }

  async function loadOperations(): Promise<void> {
    try {
      operations.value = await call('history:operations', { limit: HISTORY_LIMIT });
    } catch (e) {
      allError.value = ApiError.from(e);
    }
  }

  function addScan(rec: ScanRecord): void {
    if (allScans.value && !allScans.value.some((s) => s.id === rec.id)) allScans.value = [rec, ...allScans.value].slice(0, HISTORY_LIMIT);
    const list = scans.value[rec.image];
    // Only images whose history was loaded are kept current; others load fresh when opened.
    if (!list || list.some((s) => s.id === rec.id)) return;
    scans.value = { ...scans.value, [rec.image]: [rec, ...list].slice(0, HISTORY_LIMIT) };
  }

  /** A bitmap change was applied: its journal line is new. */
  function onOperation(): void {
    if (operations.value) void loadOperations();
  }

  function reloadLoaded(): void {
    for (const image of Object.keys(scans.value)) void load(image);
    if (allScans.value || operations.value) void loadAll();
  }

  return { scans, status, allScans, operations, allError, load, loadAll, loadOperations, addScan, onOperation, reloadLoaded };
});
