// QEMU's job lifecycle as data (qapi/job.json; the tables in QEMU's job.c as of 7.2). Every state
// change a tracked job goes through passes applyStatus(), which refuses what QEMU itself would never
// do: an impossible transition means Strata missed an event, and must re-query rather than guess.

/** The states QEMU reports (JobStatus in qapi/job.json). */
export const QEMU_JOB_STATES = ['undefined', 'created', 'running', 'paused', 'ready', 'standby', 'waiting', 'pending', 'aborting', 'concluded', 'null'] as const;
export type QemuJobState = (typeof QEMU_JOB_STATES)[number];

/**
 * Every state a tracked job can be in: QEMU's, plus `lost`, which is Strata's own and not a QEMU
 * state: the connection to QEMU ended (QEMU died or the socket closed) while the job was unfinished,
 * so its real end is unknown. Terminal, reachable from any unfinished state, no verb applies.
 */
export const JOB_STATES = [...QEMU_JOB_STATES, 'lost'] as const;
export type JobState = (typeof JOB_STATES)[number];

export const JOB_VERBS = ['cancel', 'pause', 'resume', 'set-speed', 'complete', 'finalize', 'dismiss'] as const;
export type JobVerb = (typeof JOB_VERBS)[number];

/** Where each state may go next. */
export const TRANSITIONS: Readonly<Record<JobState, readonly JobState[]>> = {
  undefined: ['created', 'lost'],
  created: ['running', 'aborting', 'null', 'lost'],
  running: ['paused', 'ready', 'waiting', 'aborting', 'lost'],
  paused: ['running', 'lost'],
  ready: ['standby', 'waiting', 'aborting', 'lost'],
  standby: ['ready', 'lost'],
  waiting: ['pending', 'aborting', 'lost'],
  pending: ['aborting', 'concluded', 'lost'],
  aborting: ['aborting', 'concluded', 'lost'],
  concluded: ['null'],
  null: [],
  // Strata's own (see JOB_STATES): nothing follows.
  lost: [],
};

/** In which states QEMU accepts each verb. (complete in standby: since QEMU 6.1.) */
export const VERBS: Readonly<Record<JobVerb, readonly JobState[]>> = {
  cancel: ['created', 'running', 'paused', 'ready', 'standby', 'waiting', 'pending'],
  pause: ['created', 'running', 'paused', 'ready', 'standby'],
  resume: ['created', 'running', 'paused', 'ready', 'standby'],
  'set-speed': ['created', 'running', 'paused', 'ready', 'standby'],
  complete: ['ready', 'standby'],
  finalize: ['pending'],
  dismiss: ['concluded'],
};

/** The QMP command for each verb (the generic job-* commands, usable on block jobs too). */
export const VERB_COMMAND: Readonly<Record<JobVerb, string>> = {
  cancel: 'job-cancel',
  pause: 'job-pause',
  resume: 'job-resume',
  'set-speed': 'block-job-set-speed',
  complete: 'job-complete',
  finalize: 'job-finalize',
  dismiss: 'job-dismiss',
};

/** A state QEMU may report (never `lost`, which only Strata sets). */
/**
 * QEMU 7.2 (its storage daemon, measured) dies with SIGSEGV when its block nodes are listed
 * (query-named-block-nodes) while a block-stream job that has finished its work is not yet
 * dismissed: the node the stream removed is still referenced. The one statement of that rule:
 * the core refuses to list nodes then (qmp/named-nodes.ts) and the app says why before asking.
 */
export const GRAPH_UNSAFE_STREAM_STATES: readonly JobState[] = ['waiting', 'pending', 'aborting', 'concluded'];

/** Does this job make listing the block nodes crash QEMU? type: QEMU's ('stream') or Strata's ('block-stream'). */
export function holdsBlockGraph(type: string, state: string): boolean {
  return (type === 'stream' || type === 'block-stream') && (GRAPH_UNSAFE_STREAM_STATES as readonly string[]).includes(state);
}

export function isJobState(s: unknown): s is QemuJobState {
  return typeof s === 'string' && (QEMU_JOB_STATES as readonly string[]).includes(s);
}

export function canTransition(from: JobState, to: JobState): boolean {
  return from === to || TRANSITIONS[from].includes(to);
}

export function allowedVerbs(state: JobState): JobVerb[] {
  return JOB_VERBS.filter((v) => VERBS[v].includes(state));
}

export function isVerbAllowed(verb: JobVerb, state: JobState): boolean {
  return VERBS[verb].includes(state);
}

/** States after which the job will not run again. */
export function isFinished(state: JobState): boolean {
  return state === 'concluded' || state === 'null' || state === 'lost';
}

export interface TrackedStatus {
  state: JobState;
  history: { state: JobState; at: number }[];
}

export type ApplyResult = { ok: true; changed: boolean } | { ok: false; reason: string };

/** The one door for state changes of a tracked job. */
export function applyStatus(job: TrackedStatus, to: JobState, at = Date.now()): ApplyResult {
  if (job.state === to) return { ok: true, changed: false };
  if (!canTransition(job.state, to)) return { ok: false, reason: `QEMU never moves a job from ${job.state} to ${to}` };
  job.state = to;
  job.history.push({ state: to, at });
  return { ok: true, changed: true };
}
