// Plans as the service runs them: laid out by a registered kind (plan:preview), journaled and started
// in the background with progress pushed as plan:changed (plan:start), and, when the core starts,
// every plan a crash left unfinished finished from what QEMU shows (resumed or rolled back), the
// user told what was done.
import { QmpClient } from '../qmp/client.ts';
import type { JobEngine } from '../jobs/engine.ts';
import type { PlanStore } from '../store/plans.ts';
import type { QmpTrafficLog } from '../store/qmp-traffic.ts';
import { stepCommands, type NewPlan, type Plan, type PlanTarget } from './types.ts';
import type { PlanInfo, PlanKind, PlanPreview, PlanRequest } from '../contract.ts';
import { recoverPlan, runPlan } from './runner.ts';
import { recoverRepairPlan } from '../repair/run.ts';
import { LIVE_REPAIR_KIND, recoverLiveRepairPlan } from '../repair/live.ts';
import { LIVE_SNAPSHOT_KIND } from '../repair/snapshot-live.ts';
import { planCommitWithBitmaps } from './commit-with-bitmaps.ts';
import { recoverOfflineCommit } from './offline-recovery.ts';
import { TOP_NODE } from '../daemon/storage-daemon.ts';
import { isStorageDaemonFor, stopStorageDaemon } from '../processes.ts';

/** The one mapping of a journaled plan to the wire. */
export function planInfo(p: Plan): PlanInfo {
  return {
    id: p.id,
    kind: p.kind,
    summary: p.summary,
    state: p.state,
    error: p.error,
    resolution: p.resolution,
    steps: p.steps.map((s) => ({ label: s.label, state: s.state, note: s.note, commands: stepCommands(s.spec), qmp: s.qmp })),
    effects: p.effects,
    createdAt: p.createdAt,
    finishedAt: p.finishedAt,
  };
}

export function planPreview(p: NewPlan): PlanPreview {
  return {
    kind: p.kind as PlanKind,
    summary: p.summary,
    steps: p.steps.map((s) => ({ label: s.label, commands: stepCommands(s.spec) })),
    effects: p.effects ?? null,
  };
}

/** A live connection as a plan needs it: its QMP client, its one job engine, where a restart finds it. */
export interface PlanConnection {
  qmp: QmpClient;
  engine: JobEngine;
  target: PlanTarget;
}

interface KindContext {
  conn: PlanConnection;
  runtimeDir: string;
  /** the job id the plan will use (unique across runs) */
  jobId: string;
}

/** Every kind of plan: how it is laid out from its parameters. */
const KINDS: { [K in PlanKind]: (ctx: KindContext, params: Extract<PlanRequest, { kind: K }>['params']) => Promise<NewPlan> } = {
  'commit-with-bitmaps': (ctx, p) =>
    planCommitWithBitmaps(ctx.conn.qmp, ctx.conn.target, p.device ?? TOP_NODE, ctx.jobId, { scheme: p.scheme ?? 'seed', speed: p.speed, runtimeDir: ctx.runtimeDir, top: p.topNode, base: p.baseNode }),
};

export const PLAN_KINDS = Object.keys(KINDS) as PlanKind[];

let seq = 0;
const newJobId = () => `strata-plan-${process.pid}-${Date.now().toString(36)}-${++seq}`;

export class ServicePlans {
  constructor(
    private store: PlanStore,
    private emit: (p: PlanInfo) => void,
    private opts: { runtimeDir: string; connection: (id: string) => PlanConnection; traffic?: QmpTrafficLog },
  ) {}

  private lay(req: PlanRequest): Promise<{ plan: NewPlan; conn: PlanConnection }> {
    const conn = this.opts.connection(req.params.connection);
    return KINDS[req.kind]({ conn, runtimeDir: this.opts.runtimeDir, jobId: newJobId() }, req.params).then((plan) => ({ plan, conn }));
  }

  async preview(req: PlanRequest): Promise<PlanPreview> {
    return planPreview((await this.lay(req)).plan);
  }

  /** Journal the plan, then run it in the background; the answer is the journaled plan. */
  async start(req: PlanRequest): Promise<PlanInfo> {
    const { plan, conn } = await this.lay(req);
    const id = this.store.create(plan);
    const info = planInfo(this.store.get(id)!);
    this.emit(info);
    void runPlan({ qmp: conn.qmp, engine: conn.engine, store: this.store, hook: () => this.emit(planInfo(this.store.get(id)!)) }, id)
      .then((out) => this.emit(planInfo(out.plan)))
      .catch(() => this.emit(planInfo(this.store.get(id)!)));
    return info;
  }

  /** At start: finish what a crash left. QEMU itself (Strata's own daemon survives the core) is asked. */
  async recoverAll(): Promise<PlanInfo[]> {
    const out: PlanInfo[] = [];
    // Repair, snapshot and stream plans run QEMU tools on offline files: the step that was running is
    // read back from the files, and the plan goes on (or is rolled back), as `strata repair` does.
    const offline = (x: Plan) => x.kind !== LIVE_REPAIR_KIND && x.kind !== LIVE_SNAPSHOT_KIND && x.steps.some((s) => s.spec.kind === 'tool');
    for (const p of this.store.unfinished().filter(offline)) {
      try {
        out.push(planInfo((await recoverRepairPlan({ store: this.store }, p.id)).plan));
      } catch (e) {
        const why = `after a restart the plan could not be finished: ${(e as Error).message}`;
        this.store.finish(p.id, 'failed', why, why);
        out.push(planInfo(this.store.get(p.id)!));
      }
      this.emit(out[out.length - 1]);
    }
    // The others run on a QEMU (a live snapshot's one tool step, its overlay file, is read back from the file by the runner).
    for (const p of this.store.unfinished().filter((x) => !offline(x))) {
      let qmp: QmpClient | null = null;
      const traffic = this.opts.traffic?.open(`recovery of plan ${p.id}`, p.target.socket);
      try {
        qmp = await QmpClient.connect(p.target.socket, { connectTimeoutMs: 3000, onTraffic: traffic?.sink });
        // A live repair (its fill steps are Strata's own, over QMP and NBD) is finished or rolled back by its own runner.
        const r = p.kind === LIVE_REPAIR_KIND ? await recoverLiveRepairPlan({ qmp, store: this.store, runtimeDir: this.opts.runtimeDir }, p.id) : await recoverPlan({ qmp, store: this.store }, p.id);
        out.push(planInfo(r.plan));
      } catch (e) {
        // Strata's own daemon is gone: the files are all there is (offline-recovery.ts).
        const offline = await recoverOfflineCommit(this.store, p.id, this.opts.runtimeDir).catch((x: Error) => `the offline recovery failed: ${x.message}`);
        if (offline !== null && this.store.get(p.id)!.state !== 'running') {
          out.push(planInfo(this.store.get(p.id)!));
          this.emit(out[out.length - 1]);
          continue;
        }
        const why = `after a restart QEMU could not be reached at ${p.target.socket} (${(e as Error).message}); nothing more was done${offline ? `; ${offline}` : ''}`;
        const held = p.target.image
          ? `; check ${p.target.image}: bitmaps QEMU held read-write read back in-use if it was killed`
          : `; if that QEMU was killed, the bitmaps it held read-write read back in-use (inconsistent: the guest wrote meanwhile): strata repair on its disk removes them and says what is lost`;
        this.store.finish(p.id, 'failed', why, why + held);
        out.push(planInfo(this.store.get(p.id)!));
      } finally {
        await qmp?.close().catch(() => {});
        traffic?.close('recovery finished');
      }
      // Strata's own daemon outlived the core that started it: stop it now, storing its bitmaps.
      // (only when that pid is still its daemon: a recycled pid belongs to someone else)
      if (p.target.image && isStorageDaemonFor(p.target.daemonPid, p.target.image)) await stopStorageDaemon(p.target.daemonPid!);
      this.emit(out[out.length - 1]);
    }
    return out;
  }
}
