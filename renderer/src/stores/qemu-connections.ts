// The QEMU processes Strata talks to: its own storage daemons for offline images and running VMs'
// QMP sockets. (The transport to the core itself is the `connection` store.) Fed by
// connection:changed events; actions go through the contract.
import { defineStore } from 'pinia';
import { computed, ref } from 'vue';
import type { BlockGraph, ConnectionInfo } from '../../../electron/core/contract';
import { call } from '../api/client';
import { ApiError } from '../api/api-error';

export const useQemuConnectionsStore = defineStore('qemu-connections', () => {
  const list = ref<ConnectionInfo[]>([]);
  const graphs = ref<Record<string, BlockGraph>>({});
  const error = ref<ApiError | null>(null);
  const busy = ref(false);

  const byId = computed(() => Object.fromEntries(list.value.map((c) => [c.id, c])));

  function setList(next: ConnectionInfo[]): void {
    list.value = next;
    for (const id of Object.keys(graphs.value)) if (!next.some((c) => c.id === id && c.state === 'connected')) delete graphs.value[id];
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

  const load = () => run(async () => setList(await call('connection:list')));
  const addSocket = (path: string) => run(() => call('connection:add-socket', { path }));
  const scanFolder = (path: string) => run(() => call('connection:scan-folder', { path }));
  const openImage = (image: string, readOnly: boolean) => run(() => call('connection:open-image', { image, readOnly }));
  const restart = (id: string) => run(() => call('connection:restart', { id }));
  const close = (id: string) => run(() => call('connection:close', { id }));
  const loadGraph = (id: string) =>
    run(async () => {
      graphs.value = { ...graphs.value, [id]: await call('connection:graph', { id }) };
    });

  return { list, graphs, error, busy, byId, setList, load, addSocket, scanFolder, openImage, restart, close, loadGraph };
});
