// How jobs read in the UI: names for job types and states, the colour family of a state, and the
// verbs offered as buttons.
import type { JobInfo, JobVerbName } from '../../../electron/core/contract';
import { holdsBlockGraph } from '../../../electron/core/jobs/states';

export const JOB_TYPE_LABEL: Record<string, string> = {
  'block-stream': 'Stream',
  'block-commit': 'Commit',
  'blockdev-mirror': 'Mirror',
  'blockdev-backup': 'Backup',
  mirror: 'Mirror',
  commit: 'Commit',
  stream: 'Stream',
  backup: 'Backup',
};

export function jobTypeLabel(type: string): string {
  return JOB_TYPE_LABEL[type] ?? type;
}

export type Tone = 'ok' | 'accent' | 'warn' | 'danger' | 'neutral' | 'live';

/** Labels where QEMU's own state name would puzzle; every other state shows as QEMU names it. */
export const STATE_LABEL: Record<string, string> = {
  undefined: 'requested',
  null: 'dismissed',
  /** Strata's own state, not QEMU's: the connection to QEMU ended before the job finished */
  lost: 'lost',
};

export const STATE_HELP: Record<string, string> = {
  undefined: 'Strata asked QEMU to start the job',
  created: 'QEMU created the job; it starts at once',
  running: 'The job is copying data',
  paused: 'Paused by the user; resume to continue',
  ready: 'All data is copied and mirrored: complete it to switch over (pivot), or cancel',
  standby: 'Ready, but paused',
  waiting: 'Finished its work, waiting for the other jobs of its transaction',
  pending: 'Finished; about to commit its changes to the graph',
  aborting: 'Stopping after a cancel or an error',
  concluded: 'Done: its result stays readable until the job is dismissed',
  null: 'Dismissed: QEMU forgot the job; it stays in Strata’s history',
  lost: 'The connection to QEMU ended while the job ran: its real end is unknown',
};

export type JobOutcome = 'ok' | 'failed' | 'cancelled' | 'lost' | null;

export function jobOutcome(j: { state: string; error: string | null }): JobOutcome {
  if (j.state === 'lost') return 'lost';
  if (j.error === 'cancelled') return 'cancelled';
  if (j.error) return 'failed';
  if (j.state === 'concluded' || j.state === 'null') return 'ok';
  return null;
}

export function jobTone(state: string, error: string | null = null): Tone {
  const o = jobOutcome({ state, error });
  if (o === 'lost' || o === 'failed') return 'danger';
  if (o === 'cancelled') return 'warn';
  switch (state) {
    case 'running':
      return 'live';
    case 'paused':
    case 'standby':
    case 'aborting':
      return 'warn';
    case 'ready':
      return 'accent';
    case 'concluded':
      return 'ok';
    case 'null':
      return 'neutral';
    default:
      return 'accent';
  }
}

export function connectionTone(state: string): Tone {
  return ({ connecting: 'accent', connected: 'ok', lost: 'danger', closed: 'neutral' } as Record<string, Tone>)[state] ?? 'neutral';
}

export function operationTone(state: string): Tone {
  return ({ planned: 'accent', running: 'live', done: 'ok', failed: 'danger' } as Record<string, Tone>)[state] ?? 'neutral';
}

export const VERB_LABEL: Record<JobVerbName, string> = {
  cancel: 'Cancel',
  pause: 'Pause',
  resume: 'Resume',
  'set-speed': 'Set speed',
  complete: 'Complete',
  finalize: 'Finalize',
  dismiss: 'Dismiss',
};

export const VERB_HELP: Record<JobVerbName, string> = {
  cancel: 'Stop the job (QEMU job-cancel)',
  pause: 'Pause the job (QEMU job-pause)',
  resume: 'Resume the paused job (QEMU job-resume)',
  'set-speed': 'Change the speed limit',
  complete: 'Switch over now: finish the job (QEMU job-complete)',
  finalize: 'Commit the finished job’s changes (QEMU job-finalize)',
  dismiss: 'Forget the concluded job in QEMU; it stays in History (QEMU job-dismiss)',
};

/**
 * The buttons for a job: the verbs QEMU's table allows in its state (JobInfo.verbs), never others.
 * Of those, set-speed needs an argument the contract's job:verb cannot carry, and QEMU's table allows
 * pause and resume alike in every active state (resume of a job that is not paused is refused), so
 * only the one that makes sense now is shown.
 */
export function offeredVerbs(j: Pick<JobInfo, 'state' | 'verbs'>): JobVerbName[] {
  const paused = j.state === 'paused' || j.state === 'standby';
  return j.verbs.filter((v) => v !== 'set-speed' && !(v === 'resume' && !paused) && !(v === 'pause' && paused));
}

export function isActiveState(state: string): boolean {
  return state !== 'concluded' && state !== 'null';
}

/**
 * The finished stream job that makes listing this connection's block nodes crash QEMU 7.2 (the
 * core's rule, holdsBlockGraph; the core refuses such a listing itself). The app asks for no graph
 * or bitmap plan then, and says what to do instead: dismiss the job.
 */
export function graphHazard(jobs: JobInfo[], connection: string): JobInfo | null {
  return jobs.find((j) => j.connection === connection && holdsBlockGraph(j.type, j.state)) ?? null;
}

/** A plan's state and its steps' states as badge tones. */
export function planTone(state: string): Tone {
  return ({ running: 'live', done: 'ok', 'rolled-back': 'warn', failed: 'danger' } as Record<string, Tone>)[state] ?? 'neutral';
}
export function planStepTone(state: string): Tone {
  return ({ done: 'ok', running: 'live', pending: 'neutral', undone: 'warn', failed: 'danger' } as Record<string, Tone>)[state] ?? 'neutral';
}
export const PLAN_KIND_LABEL: Record<string, string> = { 'commit-with-bitmaps': 'Commit, keeping the checkpoints' };
