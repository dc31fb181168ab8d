// The images the user works with (the core remembers them), which one is selected, and the first-run demo.
import { defineStore } from 'pinia';
import { computed, reactive, ref } from 'vue';
import type { DemoProgress, ScanRecord, WorkspaceImage } from '../../../electron/core/contract';
import { call } from '../api/client';
import { ApiError } from '../api/api-error';
import { useChainsStore } from './chains';

// Only the selection is kept locally: the list itself lives in the core.
const SELECTED_KEY = 'strata.selectedImage';

function readSelected(): string | null {
  try {
    return localStorage.getItem(SELECTED_KEY);
  } catch {
    return null;
  }
}

export const useWorkspaceStore = defineStore('workspace', () => {
  const images = ref<WorkspaceImage[]>([]);
  const loaded = ref(false);
  const loadError = ref<ApiError | null>(null);
  const selectedPath = ref<string | null>(readSelected());
  const adding = ref(false);
  const addError = ref<ApiError | null>(null);
  const removeError = ref<ApiError | null>(null);
  const demo = reactive({ running: false, step: '', done: 0, total: 0, error: null as ApiError | null });

  const selected = computed(() => images.value.find((i) => i.path === selectedPath.value) ?? null);
  const isEmpty = computed(() => loaded.value && images.value.length === 0);

  function select(path: string | null): void {
    selectedPath.value = path;
    try {
      if (path) localStorage.setItem(SELECTED_KEY, path);
      else localStorage.removeItem(SELECTED_KEY);
    } catch {
      // storage can be unavailable (file:// in some setups); the selection just is not remembered
    }
  }

  /** Fed by the event bridge and by load(): the core's list is the truth. */
  function setImages(list: WorkspaceImage[]): void {
    images.value = list;
    loaded.value = true;
    if (!list.some((i) => i.path === selectedPath.value)) select(list[0]?.path ?? null);
  }

  /** A scan the core recorded (a Rescan, a repair): the entry's "scanned … ago", layers and health follow it. */
  function onScanned(rec: ScanRecord): void {
    images.value = images.value.map((i) =>
      i.path === rec.image ? { ...i, lastScanAt: rec.scannedAt, lastScan: { layerCount: rec.layers.length, health: rec.health } } : i,
    );
  }

  async function load(): Promise<void> {
    try {
      setImages(await call('workspace:list'));
      loadError.value = null;
    } catch (e) {
      loadError.value = ApiError.from(e);
    }
  }

  async function add(path: string): Promise<boolean> {
    const p = path.trim();
    addError.value = null;
    if (!p) {
      addError.value = new ApiError('E_BAD_INPUT', 'type the absolute path of a qcow2 image, e.g. /var/lib/libvirt/images/vm.qcow2');
      return false;
    }
    if (!p.startsWith('/')) {
      addError.value = new ApiError('E_BAD_INPUT', `'${p}' is not an absolute path: it must start with /`);
      return false;
    }
    adding.value = true;
    try {
      const { image: img, report } = await call('workspace:add', { path: p });
      // The add already scanned the chain: show that scan rather than asking for a second one.
      useChainsStore().put(report);
      if (!images.value.some((i) => i.path === img.path)) images.value = [...images.value, img];
      select(img.path);
      return true;
    } catch (e) {
      addError.value = ApiError.from(e);
      return false;
    } finally {
      adding.value = false;
    }
  }

  async function remove(path: string): Promise<void> {
    removeError.value = null;
    const idx = images.value.findIndex((i) => i.path === path);
    try {
      await call('workspace:remove', { path });
      const rest = images.value.filter((i) => i.path !== path);
      if (selectedPath.value === path) select(rest[Math.min(idx, rest.length - 1)]?.path ?? null);
      images.value = rest;
    } catch (e) {
      removeError.value = ApiError.from(e);
    }
  }

  /** Electron only: the native picker answers a path or null when cancelled. */
  async function browse(): Promise<void> {
    addError.value = null;
    try {
      const p = await call('dialog:open-image');
      if (p) await add(p);
    } catch (e) {
      addError.value = ApiError.from(e);
    }
  }

  function setAddError(e: ApiError | null): void {
    addError.value = e;
  }

  function setDemoProgress(p: DemoProgress): void {
    demo.step = p.step;
    demo.done = p.done;
    demo.total = p.total;
  }

  async function buildDemo(): Promise<string | null> {
    if (demo.running) return null;
    demo.running = true;
    demo.error = null;
    demo.step = 'starting';
    demo.done = 0;
    demo.total = 0;
    try {
      const r = await call('demo:create');
      await load();
      // The seed's chain comes first: it is the worked example the docs explain.
      if (r.images[0]) select(r.images[0]);
      return r.images[0] ?? null;
    } catch (e) {
      demo.error = ApiError.from(e);
      return null;
    } finally {
      demo.running = false;
    }
  }

  return {
    images,
    loaded,
    loadError,
    selectedPath,
    selected,
    isEmpty,
    adding,
    addError,
    removeError,
    demo,
    select,
    setImages,
    onScanned,
    load,
    add,
    remove,
    browse,
    setAddError,
    setDemoProgress,
    buildDemo,
  };
});
