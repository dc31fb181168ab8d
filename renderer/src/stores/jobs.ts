// QEMU jobs across all connections, kept current by job:changed (every state change) and
// job:progress (throttled by the core to ~10 a second per job), plus the job history.
import { defineStore } from 'pinia';
import { computed, reactive, ref } from 'vue';
import type { JobInfo, JobRecordInfo, JobStartSpec, JobVerbName } from '../../../electron/core/contract';
import { call } from '../api/client';
import { ApiError } from '../api/api-error';
import { graphHazard } from '../lib/jobs';

export const jobKey = (j: { connection: string; id: string }) => `${j.connection}\u0000${j.id}`;

export const JOB_HISTORY_LIMIT = 200;

export const useJobsStore = defineStore('jobs', () => {
  const jobs = ref<Record<string, JobInfo>>({});
  const history = ref<JobRecordInfo[]>([]);
  const historyLoaded = ref(false);
  const historyError = ref<ApiError | null>(null);
  /** the last failed start (shown by the start form) */
  const error = ref<ApiError | null>(null);
  const starting = ref(false);
  /** per job: a verb in flight, and the last verb that failed */
  const pendingVerb = reactive<Record<string, JobVerbName | null>>({});
  const verbErrors = reactive<Record<string, ApiError | null>>({});

  const list = computed(() => Object.values(jobs.value));
  /** every job QEMU still knows (dismissed ones live on in the history) */
  const active = computed(() => list.value.filter((j) => j.state !== 'null'));
  const running = computed(() => list.value.filter((j) => !['concluded', 'null', 'lost'].includes(j.state)));

  function put(j: JobInfo): void {
    jobs.value = { ...jobs.value, [jobKey(j)]: j };
  }

  function onChanged(j: JobInfo): void {
    put(j);
    // A state change is a new line in the history: re-read it if it is on screen.
    if (historyLoaded.value) void loadHistory();
  }

  /** Jobs of connections that were closed are gone with their QEMU. */
  function pruneConnections(ids: string[]): void {
    const keep = new Set(ids);
    const next = Object.fromEntries(Object.entries(jobs.value).filter(([, j]) => keep.has(j.connection)));
    if (Object.keys(next).length !== Object.keys(jobs.value).length) jobs.value = next;
  }

  async function load(): Promise<void> {
    try {
      const all = await call('job:list', {});
      jobs.value = Object.fromEntries(all.map((j) => [jobKey(j), j]));
    } catch {
      // the Jobs view shows what it has; the next event or reconnect brings the rest
    }
  }

  async function loadHistory(): Promise<void> {
    try {
      history.value = await call('history:jobs', { limit: JOB_HISTORY_LIMIT });
      historyLoaded.value = true;
      historyError.value = null;
    } catch (e) {
      historyError.value = ApiError.from(e);
    }
  }

  async function start(connection: string, spec: JobStartSpec): Promise<JobInfo | null> {
    error.value = null;
    starting.value = true;
    try {
      const j = await call('job:start', { connection, spec });
      // Events for it may have arrived first: never go back to an older state.
      if (!jobs.value[jobKey(j)]) put(j);
      return j;
    } catch (e) {
      error.value = ApiError.from(e);
      return null;
    } finally {
      starting.value = false;
    }
  }

  /** `speed` (bytes/s, 0 = unlimited) goes with set-speed */
  async function verb(j: JobInfo, v: JobVerbName, speed?: number): Promise<boolean> {
    const k = jobKey(j);
    verbErrors[k] = null;
    pendingVerb[k] = v;
    try {
      await call('job:verb', { connection: j.connection, id: j.id, verb: v, ...(v === 'set-speed' ? { speed: speed ?? 0 } : {}) });
      return true;
    } catch (e) {
      verbErrors[k] = ApiError.from(e);
      return false;
    } finally {
      pendingVerb[k] = null;
    }
  }

  function clearError(): void {
    error.value = null;
  }

  /** A finished stream QEMU still holds on this connection: its block nodes must not be listed now. */
  function hazardOn(connection: string): JobInfo | null {
    return graphHazard(list.value, connection);
  }

  return {
    jobs,
    history,
    historyLoaded,
    historyError,
    error,
    starting,
    pendingVerb,
    verbErrors,
    list,
    active,
    running,
    put,
    onChanged,
    pruneConnections,
    load,
    loadHistory,
    start,
    verb,
    clearError,
    hazardOn,
  };
});
