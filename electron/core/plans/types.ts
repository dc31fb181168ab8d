// What a plan is made of. A step either sends one QMP command (with the command that undoes it and
// a check that reads its effect back from QEMU), or runs one job under an id chosen and journaled
// before the job is started, so that after a crash the job can be found again.
import type { QmpLogLine } from '../history/contract.ts';
import type { CommitEffects } from '../contract.ts';

export interface QmpCall {
  execute: string;
  arguments: Record<string, unknown>;
}

/** How to tell from QEMU whether a step took effect. */
export type StepCheck =
  | { bitmap: { node: string; name: string; recording?: boolean; present?: boolean } }
  /** a block node QEMU has (or has not); with `backing`, the node named there is its backing child */
  | { node: { name: string; present: boolean; backing?: string } };

export type StepSpec =
  /** undo: the command that takes the step back; 'nothing-to-undo' when its effect may stay; null: irreversible */
  | { kind: 'qmp'; command: QmpCall; undo: QmpCall | 'nothing-to-undo' | null; check: StepCheck | null }
  | {
      kind: 'job';
      jobId: string;
      /** the job-starting command, without job-id/auto-dismiss (added when sent) */
      start: QmpCall;
      /**
       * 'concluded': the step ends when the job has concluded (and been dismissed); irreversible.
       * 'ready': the step ends when an active commit or mirror is READY; a rollback cancels the
       * job (no pivot), so the step is reversible. A later 'job-complete' step pivots.
       * (Plans journaled before 'until' existed have completeAtReady instead.)
       *
       * 'pending': the step ends when a job started with auto-finalize off is PENDING (an
       * intermediate commit whose copy is complete, nothing dropped yet); a rollback cancels it.
       * A later 'job-finalize' step finalizes it.
       */
      until?: 'ready' | 'concluded' | 'pending';
      completeAtReady?: boolean;
    }
  /** job-complete of a READY job started by an earlier step, then its conclusion: irreversible */
  | { kind: 'job-complete'; jobId: string }
  /** job-finalize of a PENDING job started by an earlier step, then its conclusion: irreversible */
  | { kind: 'job-finalize'; jobId: string }
  /**
   * QEMU tool invocations (argument arrays, run in order) on an offline file: repair plans, run by
   * repair/run.ts, and a live snapshot's new overlay file (plans/runner.ts runs it with the same
   * tools). undo as for qmp; check: how the offline reader tells the step took effect.
   */
  | { kind: 'tool'; commands: string[][]; undo: string[][] | 'nothing-to-undo' | null; check: ToolCheck | null };

/** What the offline reader must see in a layer once a tool step took effect. */
/** `backing: null`: the layer has no backing file any more. */
export type ToolCheck = { layer: string; bitmap?: string; present?: boolean; recording?: boolean; stale?: boolean; backing?: string | null };

export type StepState = 'pending' | 'running' | 'done' | 'undone' | 'failed';

/**
 * How far a job step's job has got ('ready': QEMU holds it for the plan's next step, READY for
 * job-complete or PENDING for job-finalize), journaled at each change (not a note to be parsed): a restart
 * reads it to tell a job that never started from one that concluded and was dismissed.
 */
export type JobPhase = 'starting' | 'started' | 'ready' | 'concluded' | 'failed' | 'dismissed' | 'cancelled';
export type PlanState = 'running' | 'done' | 'rolled-back' | 'failed';

export interface PlanStep {
  index: number;
  label: string;
  spec: StepSpec;
  state: StepState;
  /** job steps only */
  phase: JobPhase | null;
  note: string | null;
  /** what the step exchanged with QEMU, from the traffic log */
  qmp: QmpLogLine[];
}

/** Where the plan runs: a QMP socket (Strata's daemon or a VM), recorded so a restart finds it. */
export interface PlanTarget {
  socket: string;
  /** the image Strata's own daemon serves, or null for a VM */
  image: string | null;
  daemonPid: number | null;
  /**
   * The mark the plan left in the QEMU it runs on (an object only that QEMU process holds,
   * runner.ts markSession): a restart that finds it gone knows that QEMU restarted or was replaced.
   */
  session?: string | null;
}

export interface Plan {
  id: number;
  kind: string;
  summary: string;
  /** what the plan does to the checkpoints (commit plans) */
  effects: CommitEffects | null;
  target: PlanTarget;
  state: PlanState;
  error: string | null;
  resolution: string | null;
  steps: PlanStep[];
  createdAt: string;
  finishedAt: string | null;
}

export interface NewPlan {
  kind: string;
  summary: string;
  effects?: CommitEffects | null;
  target: PlanTarget;
  steps: { label: string; spec: StepSpec }[];
}

/** The QMP commands a step sends, in order, as shown to the user before it runs. */
export function stepCommands(spec: StepSpec): QmpCall[] {
  if (spec.kind === 'qmp') return [spec.command];
  if (spec.kind === 'tool') return spec.commands.map((argv) => ({ execute: argv[0], arguments: { argv: argv.slice(1) } }));
  if (spec.kind === 'job') return [{ execute: spec.start.execute, arguments: { ...spec.start.arguments, 'job-id': spec.jobId, 'auto-dismiss': false } }];
  return [
    { execute: spec.kind, arguments: { id: spec.jobId } },
    { execute: 'job-dismiss', arguments: { id: spec.jobId } },
  ];
}

/** Does this step, once done, leave something a rollback cannot take back? */
export function isIrreversible(spec: StepSpec): boolean {
  if (spec.kind === 'qmp' || spec.kind === 'tool') return spec.undo === null;
  if (spec.kind === 'job-complete' || spec.kind === 'job-finalize') return true;
  return jobUntil(spec) === 'concluded';
}

export function jobUntil(spec: Extract<StepSpec, { kind: 'job' }>): 'ready' | 'pending' | 'concluded' | 'ready-then-complete' {
  if (spec.until) return spec.until;
  return spec.completeAtReady ? 'ready-then-complete' : 'concluded';
}
