// Jobs: QEMU's block jobs on a live connection, started, driven by their verbs, and watched.
import * as v from 'valibot';
import { id, int, nodeName, obj, optionalObj, type ChannelsOf } from '../schema.ts';
import { JOB_STATES, JOB_VERBS } from './states.ts';

export type JobStateName = (typeof JOB_STATES)[number];
export type JobVerbName = (typeof JOB_VERBS)[number];

export interface JobInfo {
  connection: string;
  id: string;
  type: string;
  state: JobStateName;
  verbs: JobVerbName[];
  current: number;
  total: number;
  /** bytes/s over the last seconds; null while not running or not yet measurable */
  rate: number | null;
  /** null unless the rate is steady */
  etaSeconds: number | null;
  /** the speed limit Strata set (bytes/s), null for none or not known (a job Strata did not start) */
  speed: number | null;
  error: string | null;
  record: number | null;
}

const speed = () => v.optional(int(1, Number.MAX_SAFE_INTEGER));

/** `device` defaults to the top node of Strata's own daemon. */
const jobStartSpec = v.variant(
  'type',
  [
    obj({ type: v.literal('block-stream'), device: v.optional(nodeName()), speed: speed() }),
    obj({ type: v.literal('block-commit'), device: v.optional(nodeName()), topNode: v.optional(nodeName()), baseNode: v.optional(nodeName()), speed: speed() }),
  ],
  'expected block-stream or block-commit',
);
export type JobStartSpec = v.InferOutput<typeof jobStartSpec>;

export const jobArgs = {
  'job:list': optionalObj({ connection: v.optional(id()) }),
  'job:start': obj({ connection: id(), spec: jobStartSpec }),
  /** `speed` (bytes/s, 0 = unlimited) goes with set-speed */
  'job:verb': v.pipe(
    obj({ connection: id(), id: id(), verb: v.picklist(JOB_VERBS, `expected one of ${JOB_VERBS.join(', ')}`), speed: v.optional(int(0, Number.MAX_SAFE_INTEGER)) }),
    v.forward(
      v.check((a) => a.verb !== 'set-speed' || a.speed !== undefined, `expected an integer in 0..${Number.MAX_SAFE_INTEGER}`),
      ['speed'],
    ),
  ),
};

export type JobChannels = ChannelsOf<typeof jobArgs, { 'job:list': JobInfo[]; 'job:start': JobInfo; 'job:verb': void }>;

export interface JobEvents {
  /** a job's state changed (always pushed) */
  'job:changed': JobInfo;
  /** a job's progress moved (at most ~10 a second per job) */
  'job:progress': JobInfo;
}
