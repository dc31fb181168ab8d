// Density per source for the current grid. Requests are debounced (wheel zoom fires many events) and
// answers that are no longer the latest for their source are dropped, so a slow answer for an old
// zoom level can never overwrite a newer one. The last answer stays drawable meanwhile.
import { reactive, watch } from 'vue';
import type { ContentSource, DensityResult } from '../../../electron/core/contract';
import { call } from '../api/client';
import { ApiError } from '../api/api-error';
import { gridKey, type Grid } from '../lib/grid';

export interface LaneData {
  result: DensityResult | null;
  /** gridKey the result (or error) belongs to */
  forGrid: string | null;
  error: ApiError | null;
  loading: boolean;
}

/** One lane of a density track: a source's label, colour and latest answer. */
export interface TrackLane {
  key: string;
  /** full label: hover details, data-lanes */
  label: string;
  /** lane label: a short name and a second line when there is room */
  short?: string;
  sub?: string;
  color: string;
  data: LaneData;
}

export const EMPTY_LANE: LaneData = { result: null, forGrid: null, error: null, loading: false };

const DEBOUNCE_MS = 40;

export function useDensity(sources: () => { key: string; source: ContentSource }[], grid: () => Grid | null) {
  const data = reactive<Record<string, LaneData>>({});
  const latest = new Map<string, number>();
  let seq = 0;
  let timer: ReturnType<typeof setTimeout> | null = null;

  function run(force: boolean): void {
    timer = null;
    const g = grid();
    if (!g) return;
    const gk = gridKey(g);
    for (const { key, source } of sources()) {
      const cur = data[key];
      if (!force && cur && cur.forGrid === gk && !cur.loading) continue;
      const id = ++seq;
      latest.set(key, id);
      data[key] = { ...(cur ?? EMPTY_LANE), loading: true };
      call('contents:density', { source, start: g.start, end: g.end, buckets: g.buckets }).then(
        (r) => {
          if (latest.get(key) === id) data[key] = { result: r, forGrid: gk, error: null, loading: false };
        },
        (e) => {
          if (latest.get(key) === id) data[key] = { result: null, forGrid: gk, error: ApiError.from(e), loading: false };
        },
      );
    }
  }

  function schedule(force = false): void {
    if (timer) clearTimeout(timer);
    timer = setTimeout(() => run(force), DEBOUNCE_MS);
  }

  watch(
    () => `${sources()
      .map((s) => s.key)
      .join('|')}#${(() => {
      const g = grid();
      return g ? gridKey(g) : '';
    })()}`,
    () => schedule(),
    { immediate: true },
  );

  function lane(key: string): LaneData {
    return data[key] ?? EMPTY_LANE;
  }

  /** After a rescan the files may have changed: ask again for everything shown. */
  function refresh(): void {
    schedule(true);
  }

  return { data, lane, refresh };
}
