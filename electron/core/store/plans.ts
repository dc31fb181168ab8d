// The plan journal. A plan and all its steps are written in one transaction before the first step
// runs; each step's state is updated as it changes. This is what a restart reads.
import type { Db } from './db.ts';
import type { JobPhase, NewPlan, Plan, PlanState, StepSpec, StepState } from '../plans/types.ts';
import { QmpTrafficLog } from './qmp-traffic.ts';

/** The QEMU job a step runs or completes, whose events belong to the step's traffic. */
const stepJob = (spec: StepSpec): string | null => (spec.kind === 'job' || spec.kind === 'job-complete' ? spec.jobId : null);

export class PlanStore {
  private traffic: QmpTrafficLog;
  constructor(private db: Db) {
    this.traffic = new QmpTrafficLog(db);
  }

  create(p: NewPlan): number {
    const now = new Date().toISOString();
    return this.db.transaction(() => {
      const id = Number(
        this.db
          .prepare("INSERT INTO plans (kind, summary, target_json, effects_json, state, created_at) VALUES (?, ?, ?, ?, 'running', ?)")
          .run(p.kind, p.summary, JSON.stringify(p.target), p.effects ? JSON.stringify(p.effects) : null, now).lastInsertRowid,
      );
      const ins = this.db.prepare("INSERT INTO plan_steps (plan, idx, label, spec_json, state, updated_at) VALUES (?, ?, ?, ?, 'pending', ?)");
      p.steps.forEach((s, i) => ins.run(id, i, s.label, JSON.stringify(s.spec), now));
      return id;
    })();
  }

  step(plan: number, idx: number, state: StepState, note: string | null = null): void {
    this.db.prepare('UPDATE plan_steps SET state = ?, note = COALESCE(?, note), updated_at = ? WHERE plan = ? AND idx = ?').run(state, note, new Date().toISOString(), plan, idx);
  }

  /** A job step's phase, with a note in words for the history. */
  phase(plan: number, idx: number, phase: JobPhase, note: string): void {
    this.db.prepare('UPDATE plan_steps SET phase = ?, note = ?, updated_at = ? WHERE plan = ? AND idx = ?').run(phase, note, new Date().toISOString(), plan, idx);
  }

  /** The plan's target with what was learnt when it started (its mark in QEMU). */
  retarget(plan: number, target: Plan['target']): void {
    this.db.prepare('UPDATE plans SET target_json = ? WHERE id = ?').run(JSON.stringify(target), plan);
  }

  note(plan: number, idx: number, note: string): void {
    this.db.prepare('UPDATE plan_steps SET note = ?, updated_at = ? WHERE plan = ? AND idx = ?').run(note, new Date().toISOString(), plan, idx);
  }

  finish(plan: number, state: Exclude<PlanState, 'running'>, error: string | null, resolution: string | null): void {
    this.db.prepare('UPDATE plans SET state = ?, error = ?, resolution = ?, finished_at = ? WHERE id = ?').run(state, error, resolution, new Date().toISOString(), plan);
  }

  get(id: number): Plan | null {
    const r = this.db.prepare('SELECT * FROM plans WHERE id = ?').get(id) as any;
    if (!r) return null;
    const steps = (this.db.prepare('SELECT * FROM plan_steps WHERE plan = ? ORDER BY idx').all(id) as any[]).map((s) => {
      const spec = JSON.parse(s.spec_json) as StepSpec;
      return { index: s.idx, label: s.label, spec, state: s.state, phase: s.phase ?? null, note: s.note, qmp: this.traffic.forStep(id, s.idx, stepJob(spec)) };
    });
    return {
      id: r.id,
      kind: r.kind,
      summary: r.summary,
      effects: r.effects_json ? JSON.parse(r.effects_json) : null,
      target: JSON.parse(r.target_json),
      state: r.state,
      error: r.error,
      resolution: r.resolution,
      steps,
      createdAt: r.created_at,
      finishedAt: r.finished_at,
    };
  }

  list(limit = 100): Plan[] {
    return (this.db.prepare('SELECT id FROM plans ORDER BY id DESC LIMIT ?').all(Math.max(1, Math.min(1000, limit))) as { id: number }[]).map((r) => this.get(r.id)!);
  }

  unfinished(): Plan[] {
    return (this.db.prepare("SELECT id FROM plans WHERE state = 'running' ORDER BY id").all() as { id: number }[]).map((r) => this.get(r.id)!);
  }
}
