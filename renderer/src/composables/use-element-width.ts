// Width of an element in CSS px, kept current by a ResizeObserver (the inspector redraws on resize).
import { onBeforeUnmount, onMounted, ref, type Ref } from 'vue';

export function useElementWidth(el: Ref<HTMLElement | null>): Ref<number> {
  const width = ref(0);
  let ro: ResizeObserver | null = null;
  onMounted(() => {
    ro = new ResizeObserver((entries) => {
      const w = entries[0]?.contentRect.width ?? 0;
      // Whole pixels: sub-pixel jitter must not trigger new density requests.
      const rounded = Math.floor(w);
      if (rounded !== width.value) width.value = rounded;
    });
    if (el.value) ro.observe(el.value);
  });
  onBeforeUnmount(() => ro?.disconnect());
  return width;
}

/** devicePixelRatio as a ref: it changes when the window moves to another screen or the user zooms. */
export function useDevicePixelRatio(): Ref<number> {
  const dpr = ref(window.devicePixelRatio || 1);
  let mq: MediaQueryList | null = null;
  const update = () => {
    dpr.value = window.devicePixelRatio || 1;
    listen();
  };
  function listen(): void {
    mq?.removeEventListener('change', update);
    mq = window.matchMedia(`(resolution: ${dpr.value}dppx)`);
    mq.addEventListener('change', update);
  }
  onMounted(listen);
  onBeforeUnmount(() => mq?.removeEventListener('change', update));
  return dpr;
}
