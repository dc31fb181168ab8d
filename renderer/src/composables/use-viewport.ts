// The inspector's viewport engine: zoom and pan of the byte range in view (buttons, wheel, keys,
// Alt/middle drag, the overview's window), drag-select to zoom into a range, and the hovered or
// pinned bucket. The maths is in lib/viewport.ts; this wires it to pointer and keyboard events.
import { computed, ref, type Ref } from 'vue';
import type { ByteView } from '../stores/inspector';
import { bucketAt, bucketRange, type Grid } from '../lib/grid';
import { byteAtX, isWholeDisk, panByFraction, panByPixels, placeSpan, selectionSpan, xOfByte, zoomAbout } from '../lib/viewport';

export interface ViewportOptions {
  /** the virtual disk's size in bytes */
  size: () => number;
  /** the granularity cells are drawn at: drag-select snaps to it, and the narrowest view is 4 of them */
  unit: () => number;
  /** the view as stored, null for the whole disk */
  stored: () => ByteView | null;
  store: (v: ByteView | null) => void;
  /** the buckets drawn for the view (snapped to them), null before the strip has a width */
  grid: () => Grid | null;
  /** the strip that takes pointer, wheel and keys, and its width in CSS px */
  plot: Ref<HTMLElement | null>;
  width: Ref<number>;
}

/** A drag shorter than this (px) is a click: it pins the bucket instead of zooming. */
const DRAG_MIN_PX = 5;

export function useViewport(o: ViewportOptions) {
  const view = computed<ByteView>(() => o.stored() ?? { start: 0, end: o.size() });
  const isFull = computed(() => o.stored() === null);
  const minSpan = computed(() => Math.min(o.size(), o.unit() * 4));

  function setView(v: ByteView | null): void {
    o.store(!v || isWholeDisk(v, o.size()) ? null : v);
  }
  function zoomAt(anchor: number, factor: number): void {
    setView(zoomAbout(view.value, anchor, factor, o.size(), minSpan.value));
  }
  function zoomCenter(factor: number): void {
    zoomAt((view.value.start + view.value.end) / 2, factor);
  }
  function pan(fraction: number): void {
    setView(panByFraction(view.value, fraction, o.size()));
  }
  function reset(): void {
    setView(null);
  }

  // ----- pointer: hover, pin, drag-select, pan
  const hoverByte = ref<number | null>(null);
  const pinned = ref(false);
  const drag = ref<{ from: number; to: number } | null>(null);
  /** Alt+drag or middle-button drag moves the view instead of selecting. */
  const panning = ref<{ x: number; view: ByteView } | null>(null);
  /** where the pointer is on the page while over the strip (the tooltip follows it) */
  const pointer = ref<{ x: number; y: number } | null>(null);

  const xToByte = (x: number) => byteAtX(o.grid()!, o.width.value, x);
  const localX = (e: PointerEvent | WheelEvent) => e.clientX - o.plot.value!.getBoundingClientRect().left;

  const hoverIndex = computed(() => {
    const g = o.grid();
    return g && hoverByte.value !== null ? bucketAt(g, hoverByte.value) : -1;
  });
  const hoverRange = computed(() => {
    const g = o.grid();
    return g && hoverIndex.value >= 0 ? bucketRange(g, hoverIndex.value) : null;
  });
  const hoverBox = computed(() => {
    const r = hoverRange.value;
    const g = o.grid();
    if (!r || !g) return null;
    const x0 = xOfByte(g, o.width.value, r.start);
    const x1 = xOfByte(g, o.width.value, r.end);
    return { left: `${x0}px`, width: `${Math.max(2, x1 - x0)}px` };
  });
  const selBox = computed(() => {
    const d = drag.value;
    if (!d || Math.abs(d.to - d.from) < 3) return null;
    return { left: `${Math.min(d.from, d.to)}px`, width: `${Math.abs(d.to - d.from)}px` };
  });

  /** Forget the hovered and pinned bucket (the pointer left, Escape, or what is shown changed). */
  function clearHover(): void {
    pinned.value = false;
    hoverByte.value = null;
    pointer.value = null;
  }

  function capture(e: PointerEvent): void {
    o.plot.value!.setPointerCapture(e.pointerId);
  }
  function release(e: PointerEvent): void {
    if (o.plot.value!.hasPointerCapture(e.pointerId)) o.plot.value!.releasePointerCapture(e.pointerId);
  }

  function onPointerDown(e: PointerEvent): void {
    if (!o.grid()) return;
    if (e.button === 1 || (e.button === 0 && e.altKey)) {
      e.preventDefault();
      panning.value = { x: localX(e), view: { ...view.value } };
      capture(e);
      return;
    }
    if (e.button !== 0) return;
    const x = localX(e);
    drag.value = { from: x, to: x };
    capture(e);
  }

  function onPointerMove(e: PointerEvent): void {
    if (!o.grid()) return;
    const x = localX(e);
    const p = panning.value;
    if (p) setView(panByPixels(p.view, x - p.x, o.width.value, o.size()));
    if (drag.value) drag.value = { ...drag.value, to: x };
    if (!pinned.value) hoverByte.value = xToByte(x);
    pointer.value = { x: e.clientX, y: e.clientY };
  }

  function onPointerUp(e: PointerEvent): void {
    if (panning.value) {
      panning.value = null;
      release(e);
      return;
    }
    const d = drag.value;
    drag.value = null;
    const g = o.grid();
    if (!d || !g) return;
    release(e);
    if (Math.abs(d.to - d.from) >= DRAG_MIN_PX) {
      setView(selectionSpan(xToByte(d.from), xToByte(d.to), o.unit(), o.size(), minSpan.value));
      pinned.value = false;
      return;
    }
    // A click pins the details so the pointer can move to them; a second click releases.
    const byte = xToByte(localX(e));
    if (pinned.value && hoverIndex.value === bucketAt(g, byte)) pinned.value = false;
    else {
      pinned.value = true;
      hoverByte.value = byte;
    }
  }

  function onPointerCancel(): void {
    drag.value = null;
    panning.value = null;
  }

  function onPointerLeave(): void {
    pointer.value = null;
    if (!pinned.value && !drag.value) hoverByte.value = null;
  }

  function onWheel(e: WheelEvent): void {
    if (!o.grid()) return;
    e.preventDefault();
    const horizontal = e.shiftKey || Math.abs(e.deltaX) > Math.abs(e.deltaY);
    if (horizontal) {
      const d = e.shiftKey ? e.deltaY || e.deltaX : e.deltaX;
      pan(d / Math.max(1, o.width.value));
      return;
    }
    const px = e.deltaMode === 1 ? e.deltaY * 16 : e.deltaY;
    zoomAt(xToByte(localX(e)), Math.exp(px * 0.0025));
  }

  function onKey(e: KeyboardEvent): void {
    const k = e.key;
    if (k === '+' || k === '=') zoomCenter(0.5);
    else if (k === '-' || k === '_') zoomCenter(2);
    else if (k === '0' || k === 'Home') reset();
    else if (k === 'ArrowLeft') pan(-0.25);
    else if (k === 'ArrowRight') pan(0.25);
    else if (k === 'Escape') clearHover();
    else return;
    e.preventDefault();
  }

  // ----- overview: the whole disk with the visible window; drag the window to pan
  const thumb = computed(() => {
    const g = o.grid();
    const size = o.size();
    if (!g || !size) return { left: '0%', width: '100%' };
    const l = (g.start / size) * 100;
    const w = Math.max(0.8, ((g.end - g.start) / size) * 100);
    return { left: `${Math.min(l, 100 - w)}%`, width: `${w}%` };
  });

  /** Clicking the overview beside the window centres it there; dragging the window moves it. */
  function onOverviewDown(e: PointerEvent, onThumb: boolean): void {
    if (e.button !== 0) return;
    const el = e.currentTarget as HTMLElement;
    const rect = el.getBoundingClientRect();
    const span = view.value.end - view.value.start;
    const toByte = (cx: number) => ((cx - rect.left) / rect.width) * o.size();
    const grabOffset = onThumb ? toByte(e.clientX) - view.value.start : span / 2;
    const move = (cx: number) => setView(placeSpan(toByte(cx) - grabOffset, span, o.size()));
    if (!onThumb) move(e.clientX);
    el.setPointerCapture(e.pointerId);
    const onMove = (ev: PointerEvent) => move(ev.clientX);
    const onUp = () => {
      el.removeEventListener('pointermove', onMove);
      el.removeEventListener('pointerup', onUp);
      el.removeEventListener('pointercancel', onUp);
    };
    el.addEventListener('pointermove', onMove);
    el.addEventListener('pointerup', onUp);
    el.addEventListener('pointercancel', onUp);
  }

  return {
    view,
    isFull,
    minSpan,
    zoomCenter,
    pan,
    reset,
    pinned,
    drag,
    panning,
    pointer,
    hoverIndex,
    hoverRange,
    hoverBox,
    selBox,
    thumb,
    clearHover,
    onPointerDown,
    onPointerMove,
    onPointerUp,
    onPointerCancel,
    onPointerLeave,
    onWheel,
    onKey,
    onOverviewDown,
  };
}
