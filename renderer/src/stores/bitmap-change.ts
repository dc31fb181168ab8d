// A bitmap change from the UI, in the order the product promises: the user says what (a form for
// add and merge), the core plans it (bitmap:plan changes nothing and answers the exact QMP), the
// user reads the plan and confirms, and only then bitmap:apply runs it. One change at a time: the
// dialog is modal.
import { defineStore } from 'pinia';
import { computed, ref } from 'vue';
import type { BitmapOpSpec, BitmapPlanInfo, BitmapTarget } from '../../../electron/core/contract';
import { call } from '../api/client';
import { ApiError } from '../api/api-error';
import { useQemuConnectionsStore } from './qemu-connections';
import { useChainsStore } from './chains';
import { useHistoryStore } from './history';
import { useNavStore } from './nav';
import { useJobsStore } from './jobs';

export type BitmapAction = 'add' | 'remove' | 'enable' | 'disable' | 'clear' | 'merge';

/** A bitmap that can be merged into the target: on the same node (where null) or another one. */
export interface MergeCandidate {
  where: string | null;
  name: string;
  /** the node or layer it lives on, for people */
  group: string;
}

export interface BitmapChangeRequest {
  action: BitmapAction;
  target: BitmapTarget;
  /** where the change goes, in words (a layer file or a node and its file) */
  place: string;
  /** how it gets there, when that is worth saying (offline through a fresh daemon) */
  via?: string;
  readOnly: boolean;
  /** the bitmap acted on (all but add) */
  bitmap?: string;
  /** bitmap names already on the target (add warns about a clash before asking the core) */
  existing: string[];
  candidates?: MergeCandidate[];
  /** what to read again once applied */
  refresh: { kind: 'graph'; connection: string } | { kind: 'chain'; image: string };
  /** a caution shown with the plan */
  note?: string | null;
}

export const ACTION_LABEL: Record<BitmapAction, string> = {
  add: 'Add a bitmap',
  remove: 'Remove bitmap',
  enable: 'Enable bitmap',
  disable: 'Disable bitmap',
  clear: 'Clear bitmap',
  merge: 'Merge into bitmap',
};

export const useBitmapChangeStore = defineStore('bitmap-change', () => {
  const request = ref<BitmapChangeRequest | null>(null);
  const step = ref<'edit' | 'review'>('review');
  const op = ref<BitmapOpSpec | null>(null);
  const plan = ref<BitmapPlanInfo | null>(null);
  const planning = ref(false);
  const applying = ref(false);
  const error = ref<ApiError | null>(null);
  let gen = 0;

  const isOpen = computed(() => request.value !== null);

  function open(req: BitmapChangeRequest): void {
    gen++;
    request.value = req;
    plan.value = null;
    op.value = null;
    error.value = null;
    applying.value = false;
    if (req.action === 'add' || req.action === 'merge') {
      step.value = 'edit';
      planning.value = false;
    } else {
      step.value = 'review';
      void review({ op: req.action, name: req.bitmap ?? '' });
    }
  }

  /** See graphHazard: planning lists the block nodes too. */
  function hazard(req: BitmapChangeRequest): ApiError | null {
    if (req.target.kind !== 'connection') return null;
    const j = useJobsStore().hazardOn(req.target.connection);
    return j
      ? new ApiError('E_QMP_STATE', `the finished stream job '${j.id}' is still held by QEMU: dismiss it first (QEMU 7.2 crashes if its block nodes are listed before that)`)
      : null;
  }

  /** Ask the core for the plan; nothing changes yet. */
  async function review(next: BitmapOpSpec): Promise<void> {
    const req = request.value;
    if (!req) return;
    const my = ++gen;
    const held = hazard(req);
    if (held) {
      op.value = next;
      error.value = held;
      return;
    }
    planning.value = true;
    error.value = null;
    op.value = next;
    try {
      const p = await call('bitmap:plan', { target: req.target, op: next, ...(req.refresh.kind === 'chain' ? { chain: req.refresh.image } : {}) });
      if (my !== gen) return;
      plan.value = p;
      step.value = 'review';
    } catch (e) {
      if (my !== gen) return;
      error.value = ApiError.from(e);
      plan.value = null;
    } finally {
      if (my === gen) planning.value = false;
    }
  }

  /** Back from the plan to the form (add and merge only). */
  function back(): void {
    gen++;
    step.value = 'edit';
    plan.value = null;
    error.value = null;
    planning.value = false;
  }

  async function apply(): Promise<boolean> {
    const req = request.value;
    if (!req || !op.value || !plan.value || applying.value) return false;
    const held = hazard(req);
    if (held) {
      error.value = held;
      return false;
    }
    applying.value = true;
    error.value = null;
    try {
      const r = await call('bitmap:apply', { target: req.target, op: op.value });
      close();
      useNavStore().notify(`Done: ${r.summary}`);
      useHistoryStore().onOperation();
      if (req.refresh.kind === 'graph') void useQemuConnectionsStore().loadGraph(req.refresh.connection);
      else void useChainsStore().inspect(req.refresh.image);
      return true;
    } catch (e) {
      error.value = ApiError.from(e);
      return false;
    } finally {
      applying.value = false;
    }
  }

  function close(): void {
    gen++;
    request.value = null;
    plan.value = null;
    op.value = null;
    error.value = null;
    planning.value = false;
  }

  return { request, step, op, plan, planning, applying, error, isOpen, open, review, back, apply, close };
});
