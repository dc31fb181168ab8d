// The QEMU processes Strata talks to: its own storage daemons for offline images and running VMs'
// QMP sockets. (The transport to the core itself is the `connection` store.) Fed by
// connection:changed events; actions go through the contract.
import { defineStore } from 'pinia';
import { computed, reactive, ref } from 'vue';
import type { BlockGraph, ConnectionInfo, QmpLogLine } from '../../../electron/core/contract';
import { call } from '../api/client';
import { ApiError } from '../api/api-error';
import { useJobsStore } from './jobs';

export interface GraphStatus {
  loading: boolean;
  error: ApiError | null;
  /** not read now because of this finished stream job (see graphHazard) */
  heldBy: string | null;
}

export const useQemuConnectionsStore = defineStore('qemu-connections', () => {
  const list = ref<ConnectionInfo[]>([]);
  const graphs = ref<Record<string, BlockGraph>>({});
  const graphStatus = reactive<Record<string, GraphStatus>>({});
  const error = ref<ApiError | null>(null);
  const busy = ref(false);
  const loaded = ref(false);
  /** the connection whose graph the Connections view shows */
  const selectedId = ref<string | null>(null);
  /** the newest lines of each connection's QMP traffic log, as last read */
  const traffic = reactive<Record<string, { lines: QmpLogLine[]; loading: boolean; error: ApiError | null }>>({});

  const byId = computed(() => Object.fromEntries(list.value.map((c) => [c.id, c])));
  const connected = computed(() => list.value.filter((c) => c.state === 'connected'));
  const selected = computed(() => (selectedId.value ? byId.value[selectedId.value] ?? null : null));

  function setList(next: ConnectionInfo[]): void {
    list.value = next;
    loaded.value = true;
    for (const id of Object.keys(graphs.value)) if (!next.some((c) => c.id === id && c.state === 'connected')) delete graphs.value[id];
    if (selectedId.value && !next.some((c) => c.id === selectedId.value)) selectedId.value = next[0]?.id ?? null;
  }

  /** A connection the core just answered with: shown at once, before its connection:changed arrives. */
  function upsert(c: ConnectionInfo): void {
    const i = list.value.findIndex((x) => x.id === c.id);
    list.value = i >= 0 ? list.value.map((x) => (x.id === c.id ? c : x)) : [...list.value, c];
  }

  async function run<T>(fn: () => Promise<T>): Promise<T | null> {
    busy.value = true;
    error.value = null;
    try {
      return await fn();
    } catch (e) {
      error.value = ApiError.from(e);
      return null;
    } finally {
      busy.value = false;
    }
  }

  /** The Connections view reads the selected connection's graph (when it is up). */
  function select(id: string | null): void {
    selectedId.value = id;
  }

  function clearError(): void {
    error.value = null;
  }

  const load = () => run(async () => setList(await call('connection:list')));
  const addSocket = (path: string) =>
    run(async () => {
      const c = await call('connection:add-socket', { path });
      upsert(c);
      select(c.id);
      return c;
    });
  const scanFolder = (path: string) =>
    run(async () => {
      const found = await call('connection:scan-folder', { path });
      for (const c of found) upsert(c);
      if (found[0]) select(found[0].id);
      return found;
    });
  const openImage = (image: string, readOnly: boolean) =>
    run(async () => {
      const c = await call('connection:open-image', { image, readOnly });
      upsert(c);
      select(c.id);
      return c;
    });
  const restart = (id: string) =>
    run(async () => {
      const c = await call('connection:restart', { id });
      upsert(c);
      return c;
    });
  const close = (id: string) =>
    run(async () => {
      await call('connection:close', { id });
      setList(list.value.filter((c) => c.id !== id));
      return true;
    });

  const graphSeq: Record<string, number> = {};
  /** Reads a graph again; only the latest answer per connection counts. */
  async function loadGraph(id: string): Promise<void> {
    const my = (graphSeq[id] = (graphSeq[id] ?? 0) + 1);
    const hazard = useJobsStore().hazardOn(id);
    if (hazard) {
      graphStatus[id] = { loading: false, error: null, heldBy: hazard.id };
      return;
    }
    graphStatus[id] = { loading: true, error: graphStatus[id]?.error ?? null, heldBy: null };
    try {
      const g = await call('connection:graph', { id });
      if (graphSeq[id] !== my) return;
      graphs.value = { ...graphs.value, [id]: g };
      graphStatus[id] = { loading: false, error: null, heldBy: null };
    } catch (e) {
      if (graphSeq[id] !== my) return;
      graphStatus[id] = { loading: false, error: ApiError.from(e), heldBy: null };
    }
  }

  /** Reads the newest lines of a connection's QMP traffic (what Strata sent and QEMU said, raw). */
  async function loadTraffic(id: string, limit = 200): Promise<void> {
    traffic[id] = { lines: traffic[id]?.lines ?? [], loading: true, error: null };
    try {
      traffic[id] = { lines: await call('connection:traffic', { id, limit }), loading: false, error: null };
    } catch (e) {
      traffic[id] = { lines: traffic[id]?.lines ?? [], loading: false, error: ApiError.from(e) };
    }
  }

  function graphStatusOf(id: string): GraphStatus {
    return graphStatus[id] ?? { loading: false, error: null, heldBy: null };
  }

  return {
    list,
    graphs,
    graphStatus,
    error,
    busy,
    loaded,
    selectedId,
    byId,
    connected,
    selected,
    setList,
    upsert,
    select,
    clearError,
    load,
    addSocket,
    scanFolder,
    openImage,
    restart,
    close,
    loadGraph,
    graphStatusOf,
    traffic,
    loadTraffic,
  };
});
