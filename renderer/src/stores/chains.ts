// One ChainReport per image, with its loading and error state. A report stays on screen while a
// rescan runs, so the view does not jump.
import { defineStore } from 'pinia';
import { reactive, ref } from 'vue';
import type { ChainReport, ScanRecord } from '../../../electron/core/contract';
import { call } from '../api/client';
import { ApiError } from '../api/api-error';

export interface ChainStatus {
  loading: boolean;
  error: ApiError | null;
}

export const useChainsStore = defineStore('chains', () => {
  const reports = ref<Record<string, ChainReport>>({});
  const status = reactive<Record<string, ChainStatus>>({});
  const inFlight = new Set<string>();
  /** asked again while a read was in flight: that read may predate the change, so read once more */
  const again = new Set<string>();

  function statusOf(path: string): ChainStatus {
    return status[path] ?? { loading: false, error: null };
  }

  async function inspect(path: string): Promise<void> {
    if (inFlight.has(path)) {
      again.add(path);
      return;
    }
    inFlight.add(path);
    status[path] = { loading: true, error: statusOf(path).error };
    try {
      const r = await call('chain:inspect', { path });
      reports.value = { ...reports.value, [path]: r };
      status[path] = { loading: false, error: null };
    } catch (e) {
      status[path] = { loading: false, error: ApiError.from(e) };
    } finally {
      inFlight.delete(path);
    }
    if (again.delete(path)) await inspect(path);
  }

  /** A report the core already sent (workspace:add answers with its first scan). */
  function put(report: ChainReport): void {
    reports.value = { ...reports.value, [report.image]: report };
    status[report.image] = { loading: false, error: null };
  }

  function ensure(path: string): void {
    if (!reports.value[path] && !statusOf(path).error) void inspect(path);
  }

  /**
   * A scan pushed by the core. Our own scans arrive while our request is in flight and are ignored;
   * someone else's scan that saw changes means our report is out of date.
   */
  function onScanned(rec: ScanRecord): void {
    if (inFlight.has(rec.image) || !reports.value[rec.image]) return;
    if (rec.changes.length > 0) void inspect(rec.image);
  }

  function forget(path: string): void {
    const { [path]: _drop, ...rest } = reports.value;
    reports.value = rest;
    delete status[path];
  }

  return { reports, status, statusOf, inspect, put, ensure, onScanned, forget };
});
