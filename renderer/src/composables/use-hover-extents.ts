// Exact extents under the cursor: one contents:extents request per source for the hovered bucket,
// debounced while the pointer moves, stale answers dropped. No range (the pointer left) or other
// sources clear the answers at once: the readout never shows a range for what is no longer there.
import { reactive, ref, watch } from 'vue';
import type { ContentSource, ExtentsResult } from '../../../electron/core/contract';
import { call } from '../api/client';
import { ApiError } from '../api/api-error';

export const EXTENTS_LIMIT = 50;
/** The one word for a range where a source marks nothing (tooltip and details alike). */
export const NOTHING_MARKED = 'nothing marked';
const DEBOUNCE_MS = 90;

export interface HoverExtents {
  result: ExtentsResult | null;
  error: ApiError | null;
}

export interface HoverRow {
  key: string;
  label: string;
  color: string;
}

export function useHoverExtents(range: () => { start: number; end: number } | null, sources: () => { key: string; source: ContentSource }[]) {
  const byKey = reactive<Record<string, HoverExtents>>({});
  /** the range the current answers are for */
  const answered = ref<{ start: number; end: number } | null>(null);
  const loading = ref(false);
  let gen = 0;
  let timer: ReturnType<typeof setTimeout> | null = null;

  const sourceKeys = () =>
    sources()
      .map((s) => s.key)
      .join('|');

  function clear(): void {
    gen++;
    if (timer) clearTimeout(timer);
    timer = null;
    for (const k of Object.keys(byKey)) delete byKey[k];
    answered.value = null;
    loading.value = false;
  }

  function schedule(): void {
    if (timer) clearTimeout(timer);
    const r = range();
    if (!r) return;
    timer = setTimeout(() => void fetch(r), DEBOUNCE_MS);
  }

  watch(
    () => {
      const r = range();
      return `${r ? `${r.start}:${r.end}` : ''}|${sourceKeys()}`;
    },
    (key, before) => {
      const r = range();
      const keys = key.slice(key.indexOf('|'));
      // The pointer left (nothing pinned), or other sources: the answers are for what is no longer
      // under the cursor or no longer shown.
      if (!r || keys !== before.slice(before.indexOf('|'))) clear();
      if (r) schedule();
    },
  );

  /** Ask again for the same range (the files may have changed: a rescan). */
  function refresh(): void {
    schedule();
  }

  async function fetch(r: { start: number; end: number }): Promise<void> {
    const my = ++gen;
    loading.value = true;
    const list = sources();
    const answers = await Promise.all(
      list.map(({ source }) =>
        call('contents:extents', { source, start: r.start, end: r.end, limit: EXTENTS_LIMIT }).then(
          (result): HoverExtents => ({ result, error: null }),
          (e): HoverExtents => ({ result: null, error: ApiError.from(e) }),
        ),
      ),
    );
    if (my !== gen) return;
    for (const k of Object.keys(byKey)) delete byKey[k];
    list.forEach(({ key }, i) => (byKey[key] = answers[i]));
    answered.value = r;
    loading.value = false;
  }

  return { byKey, answered, loading, refresh };
}
