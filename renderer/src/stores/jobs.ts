// QEMU jobs across all connections, kept current by job:changed (every state change) and
// job:progress (throttled by the core to ~10 a second per job), plus the job history.
import { defineStore } from 'pinia';
import { computed, ref } from 'vue';
import type { JobInfo, JobRecordInfo, JobStartSpec, JobVerbName } from '../../../electron/core/contract';
import { call } from '../api/client';
import { ApiError } from '../api/api-error';

const key = (j: { connection: string; id: string }) => `${j.connection}\u0000${j.id}`;

export const useJobsStore = defineStore('jobs', () => {
  const jobs = ref<Record<string, JobInfo>>({});
  const history = ref<JobRecordInfo[]>([]);
  const error = ref<ApiError | null>(null);

  const list = computed(() => Object.values(jobs.value));
  const active = computed(() => list.value.filter((j) => j.state !== 'null'));

  function put(j: JobInfo): void {
    jobs.value = { ...jobs.value, [key(j)]: j };
  }

  function onChanged(j: JobInfo): void {
    put(j);
    // A state change is a new line in the history: re-read it if it is on screen.
    if (history.value.length) void loadHistory();
  }

  async function load(): Promise<void> {
    try {
      const all = await call('job:list', {});
      jobs.value = Object.fromEntries(all.map((j) => [key(j), j]));
      error.value = null;
    } catch (e) {
      error.value = ApiError.from(e);
    }
  }

  async function loadHistory(): Promise<void> {
    try {
      history.value = await call('history:jobs', { limit: 200 });
    } catch (e) {
      error.value = ApiError.from(e);
    }
  }

  async function start(connection: string, spec: JobStartSpec): Promise<JobInfo | null> {
    error.value = null;
    try {
      const j = await call('job:start', { connection, spec });
      put(j);
      return j;
    } catch (e) {
      error.value = ApiError.from(e);
      return null;
    }
  }

  async function verb(j: JobInfo, v: JobVerbName): Promise<void> {
    error.value = null;
    try {
      await call('job:verb', { connection: j.connection, id: j.id, verb: v });
    } catch (e) {
      error.value = ApiError.from(e);
    }
  }

  return { jobs, history, error, list, active, put, onChanged, load, loadHistory, start, verb };
});
