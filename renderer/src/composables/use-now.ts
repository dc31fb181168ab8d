// A clock for "5 min ago" labels: one shared timer, ticking every 30 s while anything shows one.
import { onBeforeUnmount, onMounted, ref, type Ref } from 'vue';

const now = ref(Date.now());
let users = 0;
let timer: ReturnType<typeof setInterval> | null = null;

export function useNow(): Ref<number> {
  onMounted(() => {
    if (users++ === 0) timer = setInterval(() => (now.value = Date.now()), 30_000);
    now.value = Date.now();
  });
  onBeforeUnmount(() => {
    if (--users === 0 && timer) {
      clearInterval(timer);
      timer = null;
    }
  });
  return now;
}
