// Plans: multi-step changes laid out from what QEMU shows (plan:preview), journaled and run in the
// background (plan:start). Commit-with-checkpoints is the one kind today.
import * as v from 'valibot';
import type { QmpLogLine } from '../history/contract.ts';
import { id, int, obj, type ChannelsOf } from '../schema.ts';

/** What a commit plan does to the checkpoints, shown before it runs and kept with the plan. */
export interface CommitEffects {
  scheme: 'seed' | 'libvirt';
  /** the layer committed (it leaves the chain) and the one it is committed into */
  top: string;
  base: string;
  /** every layer that leaves the chain, top first (absent: only `top`) */
  removed?: string[];
  /** the top is not the active layer: nothing is pivoted, the disk keeps running on `active` */
  intermediate?: boolean;
  /** the image the disk runs on afterwards */
  active: string;
  /**
   * every layer's bitmaps that were consistent when the plan was made (removed layers and base): if
   * Strata's own daemon is killed mid-plan, these are the ones whose stored contents can be kept
   */
  consistentBefore?: { file: string; bitmaps: string[] }[];
  /** base bitmaps disabled while the commit copies (they keep exactly what they had) */
  disabledDuringCommit: string[];
  /** base bitmaps that keep recording through the commit, and why */
  keptRecording: { name: string; why: string }[];
  /** the top's bitmaps carried into the base (created there when missing), merged from the top's */
  carried: { name: string; granularity: number; persistent: boolean; created: boolean; recordsAfter: boolean; from?: string[] }[];
  /** the top's bitmaps that are not carried, and why */
  lost: { name: string; why: string }[];
  /** base bitmaps disabled for the commit and recording again afterwards */
  reEnabled: string[];
  /** every bitmap enabled after the switch-over (re-enabled or carried) */
  enabledAfter: string[];
  /** the checkpoints the chain still has afterwards, oldest first */
  checkpointsKept: string[];
}

/** A plan's kind and parameters, as plan:preview and plan:start take them. */
const planRequest = v.variant(
  'kind',
  [
    obj({
      kind: v.literal('commit-with-bitmaps'),
      /** a live connection (Strata's daemon holding the image read-write, or a VM); device: the top node */
      params: obj({
        connection: id(),
        device: v.optional(id()),
        /** the commit's top and base nodes (default: the device, and its backing) */
        topNode: v.optional(id()),
        baseNode: v.optional(id()),
        scheme: v.optional(v.picklist(['seed', 'libvirt'], 'expected seed or libvirt')),
        speed: v.optional(int(1, Number.MAX_SAFE_INTEGER)),
      }),
    }),
  ],
  'expected one of commit-with-bitmaps',
);
export type PlanRequest = v.InferOutput<typeof planRequest>;
export type PlanKind = PlanRequest['kind'];

export interface PlanStepInfo {
  label: string;
  state: 'pending' | 'running' | 'done' | 'undone' | 'failed';
  note: string | null;
  /** the exact QMP the step sends, in order */
  commands: { execute: string; arguments: Record<string, unknown> }[];
  /** what the step exchanged with QEMU, raw from the traffic log (empty before it ran) */
  qmp: QmpLogLine[];
}

/** A plan laid out but not journaled or run: what the confirmation shows. */
export interface PlanPreview {
  kind: PlanKind;
  summary: string;
  steps: Omit<PlanStepInfo, 'state' | 'note' | 'qmp'>[];
  effects: CommitEffects | null;
}

export interface PlanInfo {
  id: number;
  kind: string;
  summary: string;
  state: 'running' | 'done' | 'rolled-back' | 'failed';
  error: string | null;
  /** what Strata did, in plain words (after a restart: whether it resumed or rolled back) */
  resolution: string | null;
  steps: PlanStepInfo[];
  effects: CommitEffects | null;
  createdAt: string;
  finishedAt: string | null;
}

export const planArgs = {
  'plan:preview': planRequest,
  'plan:start': planRequest,
};

export type PlanChannels = ChannelsOf<
  typeof planArgs,
  {
    /** lays a plan out from what QEMU shows now: its steps with their QMP and its effects; changes nothing */
    'plan:preview': PlanPreview;
    /** journals the plan, then runs it in the background (plan:changed follows it) */
    'plan:start': PlanInfo;
  }
>;

export interface PlanEvents {
  /** a plan started, advanced, finished, or was resumed / rolled back after a restart */
  'plan:changed': PlanInfo;
}
