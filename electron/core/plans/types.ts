// What a plan is made of. A step either sends one QMP command (with the command that undoes it and
// a check that reads its effect back from QEMU), or runs one job under an id chosen and journaled
// before the job is started, so that after a crash the job can be found again.

export interface QmpCall {
  execute: string;
  arguments: Record<string, unknown>;
}

/** How to tell from QEMU whether a step took effect. */
export type StepCheck = { bitmap: { node: string; name: string; recording?: boolean; present?: boolean } };

export type StepSpec =
  | { kind: 'qmp'; command: QmpCall; undo: QmpCall | null; check: StepCheck | null }
  | {
      kind: 'job';
      jobId: string;
      /** the job-starting command, without job-id/auto-dismiss (added when sent) */
      start: QmpCall;
      /** active commit and mirror wait at READY for job-complete */
      completeAtReady: boolean;
    };

export type StepState = 'pending' | 'running' | 'done' | 'undone' | 'failed';
export type PlanState = 'running' | 'done' | 'rolled-back' | 'failed';

export interface PlanStep {
  index: number;
  label: string;
  spec: StepSpec;
  state: StepState;
  note: string | null;
}

/** Where the plan runs: a QMP socket (Strata's daemon or a VM), recorded so a restart finds it. */
export interface PlanTarget {
  socket: string;
  /** the image Strata's own daemon serves, or null for a VM */
  image: string | null;
  daemonPid: number | null;
}

export interface Plan {
  id: number;
  kind: string;
  summary: string;
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
  target: PlanTarget;
  steps: { label: string; spec: StepSpec }[];
}
