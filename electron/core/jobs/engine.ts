// The job engine for one QMP connection: it starts jobs with auto-dismiss off (so a failed job's
// error stays readable), follows them through QEMU's events with the state table as the referee,
// polls query-jobs for progress (QEMU sends no progress events) at most ~10 times a second, allows
// only the verbs the table allows, and keeps every job and state change in SQLite.
import type { QmpClient, TrafficTag } from '../qmp/client.ts';
import type { QmpEvent } from '../qmp/protocol.ts';
import { allowedVerbs, applyStatus, isFinished, isJobState, isVerbAllowed, VERB_COMMAND, type JobState, type JobVerb } from './states.ts';
import type { JobStore } from '../store/jobs.ts';
import { StrataError } from '../errors.ts';
import type { JobInfo } from '../contract.ts';
import { ProgressWindow } from './progress.ts';

/** A job as the engine knows it: the contract's JobInfo without the connection it belongs to. */
export type JobView = Omit<JobInfo, 'connection'> & { state: JobState; verbs: JobVerb[] };

interface Tracked extends JobView {
  history: { state: JobState; at: number }[];
  progress: ProgressWindow;
  lastPush: number;
}

export interface EngineOptions {
  connection: string;
  store?: JobStore;
  /** the connection's traffic-log session: a job's QMP is read back from there */
  session?: number | null;
  pollMs?: number;
  onUpdate?: (job: JobView) => void;
}

export type JobStart =
  | { type: 'block-stream'; device: string; base?: string; 'base-node'?: string; 'backing-file'?: string }
  | { type: 'block-commit'; device: string; top?: string; 'top-node'?: string; base?: string; 'base-node'?: string; 'backing-file'?: string }
  | { type: 'blockdev-backup' | 'blockdev-mirror'; device: string; target: string; sync: 'full' | 'top' | 'none' | 'incremental' | 'bitmap'; bitmap?: string };

/** this process's start, base 36: with the pid it tells one run of Strata from another */
const RUN = Date.now().toString(36);

const view = (t: Tracked): JobView => ({
  id: t.id,
  type: t.type,
  state: t.state,
  verbs: allowedVerbs(t.state),
  current: t.current,
  total: t.total,
  rate: t.rate,
  etaSeconds: t.etaSeconds,
  speed: t.speed,
  error: t.error,
  record: t.record,
});

export class JobEngine {
  private jobs = new Map<string, Tracked>();
  private timer: NodeJS.Timeout | null = null;
  private offEvent: () => void;
  private offClose: () => void;
  private waiters = new Set<() => void>();
  private seq = 0;

  constructor(private qmp: QmpClient, private opts: EngineOptions) {
    this.offEvent = qmp.onEvent((e) => this.onEvent(e));
    this.offClose = qmp.onClose((why) => this.onLost(why));
  }

  list(): JobView[] {
    return [...this.jobs.values()].map(view);
  }

  get(id: string): JobView | undefined {
    const t = this.jobs.get(id);
    return t && view(t);
  }

  /** Start a job; its id is Strata's own (strata-N) unless given. `tag`: whose traffic the start is too (a plan step). */
  async start(spec: JobStart, jobId?: string, tag?: TrafficTag): Promise<JobView> {
    // Unique across runs too (a pid is reused after a restart): the start time goes in.
    const id = jobId ?? `strata-${process.pid}-${RUN}-${++this.seq}`;
    const { type, ...args } = spec;
    const t = this.track(id, type);
    const limit = (args as Record<string, unknown>).speed;
    t.speed = typeof limit === 'number' && limit > 0 ? limit : null;
    t.record = this.create(id, type, args, 'undefined');
    try {
      await this.qmp.execute(type, { ...args, 'job-id': id, 'auto-dismiss': false }, { tag: this.tag(t, tag) });
    } catch (e) {
      this.jobs.delete(id);
      if (t.record !== null) {
        this.opts.store?.setError(t.record, (e as Error).message);
        this.opts.store?.event(t.record, 'null', `QEMU refused to start it: ${(e as Error).message}`);
      }
      throw e;
    }
    this.ensurePolling();
    return view(t);
  }

  /** Follow a job that a QMP `transaction` is about to start (blockdev-backup inside one): call before sending it. */
  adopt(id: string, type: string, args: unknown): JobView {
    const t = this.track(id, type);
    t.record = this.create(id, type, args, 'undefined');
    this.ensurePolling();
    return view(t);
  }

  /** A verb, only where QEMU's table allows it in the job's current state. */
  async verb(id: string, verb: JobVerb, extra: Record<string, unknown> = {}): Promise<void> {
    const t = this.jobs.get(id);
    if (!t) throw new StrataError('E_BAD_INPUT', `${this.opts.connection}: no job '${id}'`);
    if (!isVerbAllowed(verb, t.state)) {
      throw new StrataError('E_BAD_INPUT', `job '${id}' is ${t.state}: ${verb} is allowed only when ${['ready', 'standby', 'pending', 'concluded'].filter((s) => isVerbAllowed(verb, s as JobState)).join(' or ') || 'running'}`);
    }
    const args = verb === 'set-speed' ? { device: id, ...extra } : { id, ...extra };
    await this.qmp.execute(VERB_COMMAND[verb], args, { tag: this.tag(t) });
    if (verb === 'set-speed') t.speed = typeof extra.speed === 'number' && extra.speed > 0 ? extra.speed : null;
    if (verb === 'dismiss') {
      // job-dismiss moves the job to null synchronously; the event may follow, or not.
      this.setState(t, 'null', null);
    }
  }

  /** Adopt jobs QEMU already has (after a restart of Strata, or on a VM someone else drives). */
  async sync(): Promise<JobView[]> {
    const list = await this.qmp.execute<any[]>('query-jobs');
    const seen = new Set<string>();
    for (const j of list) {
      seen.add(j.id);
      let t = this.jobs.get(j.id);
      if (!t) {
        t = this.track(j.id, j.type);
        t.record = this.create(j.id, j.type, { adopted: true }, j.status);
        t.state = j.status;
      } else if (t.state !== j.status) this.setState(t, j.status, 'resynchronised from query-jobs', true);
      this.sample(t, j['current-progress'], j['total-progress']);
      if (j.error && !t.error) this.fail(t, j.error);
    }
    for (const t of this.jobs.values()) if (!seen.has(t.id) && t.state !== 'null' && t.state !== 'lost') this.setState(t, 'null', 'gone from query-jobs', true);
    this.ensurePolling();
    return this.list();
  }

  /** Resolves when `pred` holds for the job (checked on every update). */
  waitFor(id: string, pred: (j: JobView) => boolean, timeoutMs = 600000): Promise<JobView> {
    return new Promise((resolve, reject) => {
      const check = () => {
        const t = this.jobs.get(id);
        if (!t) return false;
        if (pred(view(t))) {
          cleanup();
          resolve(view(t));
          return true;
        }
        if (t.state === 'null' || t.state === 'lost') {
          cleanup();
          reject(new StrataError('E_QMP_INTERRUPTED', `job '${id}' ended (${t.state}) before the awaited condition${t.error ? `: ${t.error}` : ''}`));
          return true;
        }
        return false;
      };
      const timer = setTimeout(() => {
        cleanup();
        reject(new StrataError('E_QMP_TIMEOUT', `job '${id}' did not reach the awaited state within ${timeoutMs} ms`));
      }, timeoutMs);
      const cleanup = () => {
        clearTimeout(timer);
        this.waiters.delete(w);
      };
      const w = () => void check();
      this.waiters.add(w);
      check();
    });
  }

  close(): void {
    this.offEvent();
    this.offClose();
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }

  private create(id: string, type: string, args: unknown, state: string): number | null {
    return this.opts.store?.create(id, this.opts.connection, type, args, state, this.opts.session ?? null) ?? null;
  }

  /** The traffic tag of a command sent for this job (its record's, and a plan step's when given). */
  private tag(t: Tracked, extra?: TrafficTag): TrafficTag | undefined {
    const tag = { ...extra, ...(t.record !== null ? { job: t.record } : {}) };
    return Object.keys(tag).length ? tag : undefined;
  }

  private track(id: string, type: string): Tracked {
    const t: Tracked = { id, type, state: 'undefined', verbs: [], current: 0, total: 0, rate: null, etaSeconds: null, speed: null, error: null, record: null, history: [], progress: new ProgressWindow(), lastPush: 0 };
    this.jobs.set(id, t);
    return t;
  }

  private push(t: Tracked): void {
    t.lastPush = Date.now();
    this.opts.onUpdate?.(view(t));
    for (const w of [...this.waiters]) w();
  }

  private setState(t: Tracked, to: JobState, note: string | null, force = false): void {
    const r = applyStatus(t, to);
    if (r.ok && !r.changed) return; // the same news twice (e.g. dismiss's reply and its event)
    if (!r.ok) {
      if (!force) {
        // We missed an event: QEMU is the truth. Record it and re-read.
        if (t.record !== null) this.opts.store?.event(t.record, t.state, `out of order: ${r.reason}; re-reading query-jobs`);
        void this.sync().catch(() => {});
        return;
      }
      t.state = to;
      t.history.push({ state: to, at: Date.now() });
    }
    if (t.record !== null) this.opts.store?.event(t.record, to, note);
    if (to !== 'running') {
      // Nothing moves while paused, ready or finished: no rate, no time left; measured afresh on resume.
      t.progress.reset();
      t.rate = null;
      t.etaSeconds = isFinished(to) ? 0 : null;
    }
    this.push(t);
  }

  private fail(t: Tracked, error: string): void {
    t.error = error;
    if (t.record !== null) this.opts.store?.setError(t.record, error);
  }

  private onEvent(e: QmpEvent): void {
    const d = (e.data ?? {}) as Record<string, any>;
    if (e.event === 'JOB_STATUS_CHANGE') {
      const t = this.jobs.get(d.id);
      if (t && isJobState(d.status)) this.setState(t, d.status, null);
      else if (!t && isJobState(d.status) && d.status === 'created') {
        // A job someone else started on this QEMU: follow it too.
        const n = this.track(d.id, 'unknown');
        n.record = this.opts.store?.create(d.id, this.opts.connection, 'unknown', { foreign: true }, 'created') ?? null;
        n.state = 'created';
        this.ensurePolling();
      }
      return;
    }
    const t = this.jobs.get(d.device ?? d.id);
    if (!t) return;
    if (e.event === 'BLOCK_JOB_COMPLETED' || e.event === 'BLOCK_JOB_CANCELLED') {
      this.sample(t, d.offset, d.len);
      if (d.error) this.fail(t, d.error);
      else if (e.event === 'BLOCK_JOB_CANCELLED' && !t.error) this.fail(t, 'cancelled');
      this.push(t);
    } else if (e.event === 'BLOCK_JOB_ERROR') {
      if (t.record !== null) this.opts.store?.event(t.record, t.state, `I/O error during ${d.operation}, action ${d.action}`);
    }
  }

  private onLost(why: string): void {
    for (const t of this.jobs.values()) {
      if (isFinished(t.state)) continue;
      this.fail(t, `the connection to QEMU ended while the job was ${t.state} (${why})`);
      this.setState(t, 'lost', why, true);
    }
    this.close();
  }

  private sample(t: Tracked, current: unknown, total: unknown): void {
    if (typeof current !== 'number' || typeof total !== 'number') return;
    t.progress.push(Date.now(), current);
    t.current = current;
    t.total = total;
    const f = t.progress.figures(total, t.state === 'running');
    t.rate = f.rate;
    t.etaSeconds = isFinished(t.state) ? 0 : f.etaSeconds;
  }

  private ensurePolling(): void {
    if (this.timer) return;
    const ms = this.opts.pollMs ?? 100;
    this.timer = setInterval(() => void this.poll(ms), ms);
    this.timer.unref();
  }

  private async poll(ms: number): Promise<void> {
    const active = [...this.jobs.values()].filter((t) => !isFinished(t.state));
    if (active.length === 0) {
      if (this.timer) clearInterval(this.timer);
      this.timer = null;
      return;
    }
    let list: any[];
    try {
      list = await this.qmp.execute<any[]>('query-jobs', undefined, { timeoutMs: 5000 });
    } catch {
      return; // a lost connection is handled by onLost
    }
    const now = Date.now();
    for (const j of list) {
      const t = this.jobs.get(j.id);
      if (!t) continue;
      const before = t.current;
      this.sample(t, j['current-progress'], j['total-progress']);
      if (j.error && !t.error) this.fail(t, j.error);
      // Throttle: at most one progress push per poll interval per job, and only on change.
      if (t.current !== before && now - t.lastPush >= ms * 0.9) this.push(t);
    }
  }
}
