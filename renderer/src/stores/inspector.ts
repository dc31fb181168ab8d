// What the bitmap inspector shows, per image: the overlaid sources (each with its colour), whether the
// per-layer allocation rows are on, and the visible byte range. Kept in a store so it survives tab
// switches and so the chain view can open the inspector on a checkpoint or a bitmap.
import { defineStore } from 'pinia';
import { reactive } from 'vue';
import type { ContentSource } from '../../../electron/core/contract';
import { sourceKey } from '../lib/content-source';

/** Distinct hues that stay readable on the dark surface and differ from the bitmap-state colours. */
export const OVERLAY_COLORS = ['#5aa9ff', '#f0a04b', '#c38cf5', '#4fd1c5', '#f47fa9', '#d9d35b'];
export const MAX_OVERLAY = OVERLAY_COLORS.length;

export interface OverlayEntry {
  key: string;
  source: ContentSource;
  color: string;
}

export interface ByteView {
  start: number;
  end: number;
}

export interface ImageInspector {
  entries: OverlayEntry[];
  showAllocation: boolean;
  view: ByteView | null;
  /** the user chose sources here at least once: no default is imposed any more */
  touched: boolean;
}

export const useInspectorStore = defineStore('inspector', () => {
  const byImage = reactive<Record<string, ImageInspector>>({});

  function stateFor(image: string): ImageInspector {
    if (!byImage[image]) byImage[image] = { entries: [], showAllocation: true, view: null, touched: false };
    return byImage[image];
  }

  function freeColor(st: ImageInspector): string {
    return OVERLAY_COLORS.find((c) => !st.entries.some((e) => e.color === c)) ?? OVERLAY_COLORS[st.entries.length % OVERLAY_COLORS.length];
  }

  /** Show exactly this source (what a click in the chain view means). */
  function show(image: string, source: ContentSource): void {
    const st = stateFor(image);
    st.entries = [{ key: sourceKey(source), source, color: OVERLAY_COLORS[0] }];
    st.touched = true;
  }

  /** A first look shows something useful rather than an empty strip. */
  function showDefault(image: string, source: ContentSource | null): void {
    const st = stateFor(image);
    if (st.touched) return;
    st.touched = true;
    if (source) st.entries = [{ key: sourceKey(source), source, color: OVERLAY_COLORS[0] }];
  }

  /** Add or remove one source from the overlay. */
  function toggle(image: string, source: ContentSource): void {
    const st = stateFor(image);
    const key = sourceKey(source);
    st.touched = true;
    if (st.entries.some((e) => e.key === key)) st.entries = st.entries.filter((e) => e.key !== key);
    else if (st.entries.length < MAX_OVERLAY) st.entries = [...st.entries, { key, source, color: freeColor(st) }];
  }

  function has(image: string, source: ContentSource): boolean {
    const key = sourceKey(source);
    return stateFor(image).entries.some((e) => e.key === key);
  }

  function clear(image: string): void {
    stateFor(image).entries = [];
  }

  function setShowAllocation(image: string, on: boolean): void {
    stateFor(image).showAllocation = on;
  }

  function setView(image: string, view: ByteView | null): void {
    stateFor(image).view = view;
  }

  /** Drop sources that no longer exist after a rescan (a removed bitmap or layer). */
  function prune(image: string, valid: (s: ContentSource) => boolean): void {
    const st = stateFor(image);
    const kept = st.entries.filter((e) => valid(e.source));
    if (kept.length !== st.entries.length) st.entries = kept;
  }

  return { byImage, stateFor, show, showDefault, toggle, has, clear, setShowAllocation, setView, prune };
});
