// Which top-level view is on screen (the rail), and short-lived notices ("Bitmap added").
import { defineStore } from 'pinia';
import { ref } from 'vue';
import type { AppView } from '../lib/nav';
import type { ViewTab } from '../lib/view-tab';

export interface Notice {
  id: number;
  text: string;
  tone: 'ok' | 'info';
}

const NOTICE_MS = 4000;

export const useNavStore = defineStore('nav', () => {
  const view = ref<AppView>('workspace');
  /** the selected workspace image's tab (chain, inspector, history): here so other views can open the inspector */
  const imageTab = ref<ViewTab>('chain');
  const notices = ref<Notice[]>([]);
  let seq = 0;

  function go(v: AppView): void {
    view.value = v;
  }

  function notify(text: string, tone: Notice['tone'] = 'ok', ms = NOTICE_MS): void {
    // File names are enough in a notice: the full paths are in History.
    const n = { id: ++seq, text: text.replace(/\/(?:[^\s/']+\/)+([^\s/':]+)/g, '$1'), tone };
    notices.value = [...notices.value, n].slice(-3);
    setTimeout(() => dismissNotice(n.id), ms);
  }

  function dismissNotice(id: number): void {
    notices.value = notices.value.filter((n) => n.id !== id);
  }

  return { view, imageTab, notices, go, notify, dismissNotice };
});
