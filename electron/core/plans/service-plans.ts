// Plans as the service runs them: started in the background with progress pushed as plan:changed,
// and, when the core starts, every plan a crash left unfinished is finished from what QEMU shows
// (resumed or rolled back) and the user is told what was done.
import { QmpClient } from '../qmp/client.ts';
import type { PlanStore } from '../store/plans.ts';
import type { Plan } from './types.ts';
import type { PlanInfo } from '../contract.ts';
import { recoverPlan, runPlan } from './runner.ts';
import { planCommitWithBitmaps } from './commit-with-bitmaps.ts';
import { TOP_NODE } from '../daemon/storage-daemon.ts';

export function planInfo(p: Plan): PlanInfo {
  return {
    id: p.id,
    kind: p.kind,
    summary: p.summary,
    state: p.state,
    error: p.error,
    resolution: p.resolution,
    steps: p.steps.map((s) => ({ label: s.label, state: s.state, note: s.note })),
    createdAt: p.createdAt,
    finishedAt: p.finishedAt,
  };
}

export class ServicePlans {
  constructor(
    private store: PlanStore,
    private emit: (p: PlanInfo) => void,
  ) {}

  /** Journal the plan, then run it in the background; the answer is the journaled plan. */
  async startCommitWithBitmaps(qmp: QmpClient, target: { socket: string; image: string | null; daemonPid: number | null }, device = TOP_NODE): Promise<PlanInfo> {
    const plan = await planCommitWithBitmaps(qmp, target, device, `strata-plan-${Date.now().toString(36)}`);
    const id = this.store.create(plan);
    const info = planInfo(this.store.get(id)!);
    this.emit(info);
    void runPlan({ qmp, store: this.store, hook: () => this.emit(planInfo(this.store.get(id)!)) }, id)
      .then((out) => this.emit(planInfo(out.plan)))
      .catch(() => this.emit(planInfo(this.store.get(id)!)));
    return info;
  }

  /** At start: finish what a crash left. QEMU itself (Strata's own daemon survives the core) is asked. */
  async recoverAll(): Promise<PlanInfo[]> {
    const out: PlanInfo[] = [];
    for (const p of this.store.unfinished()) {
      let qmp: QmpClient | null = null;
      try {
        qmp = await QmpClient.connect(p.target.socket, { connectTimeoutMs: 3000 });
        const r = await recoverPlan({ qmp, store: this.store }, p.id);
        out.push(planInfo(r.plan));
      } catch (e) {
        const why = `after a restart QEMU could not be reached at ${p.target.socket} (${(e as Error).message}); nothing more was done`;
        const held = p.target.image ? `; check ${p.target.image}: bitmaps QEMU held read-write read back in-use if it was killed` : '';
        this.store.finish(p.id, 'failed', why, why + held);
        out.push(planInfo(this.store.get(p.id)!));
      } finally {
        await qmp?.close().catch(() => {});
      }
      // Strata's own daemon outlived the core that started it: stop it now, storing its bitmaps.
      if (p.target.daemonPid) {
        try {
          process.kill(p.target.daemonPid, 'SIGTERM');
        } catch {
          // already gone
        }
      }
      this.emit(out[out.length - 1]);
    }
    return out;
  }
}
