// Transport and app facts: which transport, whether it is up, and what the core reports about itself.
import { defineStore } from 'pinia';
import { computed, ref } from 'vue';
import type { AppInfo } from '../../../electron/core/contract';
import { call, getTransport } from '../api/client';
import { ApiError } from '../api/api-error';
import type { ConnectionStatus } from '../api/transport';

export const useConnectionStore = defineStore('connection', () => {
  const transport = getTransport();
  const kind = ref(transport.kind);
  const status = ref<ConnectionStatus>(transport.status());
  /** true once the link was up at least once: a later drop is a "lost connection", not "starting" */
  const everOpen = ref(status.value.state === 'open');
  const appInfo = ref<AppInfo | null>(null);
  const appInfoError = ref<ApiError | null>(null);

  const transportLabel = computed(() => (kind.value === 'ipc' ? 'Electron IPC' : 'Browser mode'));
  const isOpen = computed(() => status.value.state === 'open');

  function setStatus(s: ConnectionStatus): void {
    status.value = s;
    if (s.state === 'open') everOpen.value = true;
  }

  async function loadAppInfo(): Promise<void> {
    try {
      appInfo.value = await call('app:info');
      appInfoError.value = null;
    } catch (e) {
      appInfoError.value = ApiError.from(e);
    }
  }

  function reconnectNow(): void {
    transport.reconnectNow();
  }

  return { kind, status, everOpen, appInfo, appInfoError, transportLabel, isOpen, setStatus, loadAppInfo, reconnectNow };
});
