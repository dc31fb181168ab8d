// The journal of changes: a row is written before the first QMP command of an operation and
// updated as it ends, with the QMP exchanged, so history shows exactly what Strata did.
import type { Db } from './db.ts';
import type { OperationInfo } from '../contract.ts';
import type { QmpLogLine } from '../history/contract.ts';
import { QmpTrafficLog } from './qmp-traffic.ts';

export type OperationState = 'planned' | 'running' | 'done' | 'failed';

export interface OperationRecord {
  id: number;
  kind: string;
  target: string;
  summary: string;
  plan: unknown;
  state: OperationState;
  error: string | null;
  /**
   * The QMP exchanged: the operation's tagged lines in its connection's traffic log, or, for an
   * operation that had a connection of its own (the CLI's daemon), every line of that connection.
   */
  log: QmpLogLine[];
  createdAt: string;
  finishedAt: string | null;
}

export class Operations {
  private traffic: QmpTrafficLog;
  constructor(private db: Db) {
    this.traffic = new QmpTrafficLog(db);
  }

  begin(kind: string, target: string, summary: string, plan: unknown): number {
    const r = this.db
      .prepare("INSERT INTO operations (kind, target, summary, plan_json, state, created_at) VALUES (?, ?, ?, ?, 'running', ?)")
      .run(kind, target, summary, JSON.stringify(plan), new Date().toISOString());
    return Number(r.lastInsertRowid);
  }

  /** log: the lines of a connection the operation had to itself; [] when they are in the traffic log */
  finish(id: number, state: 'done' | 'failed', error: string | null, log: OperationRecord['log'] = []): void {
    this.db
      .prepare('UPDATE operations SET state = ?, error = ?, log_json = ?, finished_at = ? WHERE id = ?')
      .run(state, error, JSON.stringify(log), new Date().toISOString(), id);
  }

  list(limit = 100): OperationRecord[] {
    const rows = this.db.prepare('SELECT * FROM operations ORDER BY id DESC LIMIT ?').all(Math.max(1, Math.min(1000, limit))) as any[];
    return rows.map((r) => {
      const own = JSON.parse(r.log_json) as QmpLogLine[];
      return {
        id: r.id,
        kind: r.kind,
        target: r.target,
        summary: r.summary,
        plan: JSON.parse(r.plan_json),
        state: r.state,
        error: r.error,
        log: own.length ? own : this.traffic.forOperation(r.id),
        createdAt: r.created_at,
        finishedAt: r.finished_at,
      };
    });
  }

  /** Operations a crash left running: the next start must look at them. */
  unfinished(): OperationRecord[] {
    return this.list(1000).filter((o) => o.state === 'running' || o.state === 'planned');
  }
}

/** The one mapping of a journaled operation to the wire (the plan it ran stays in the store). */
export function toOperationInfo(o: OperationRecord): OperationInfo {
  return {
    id: o.id,
    kind: o.kind,
    target: o.target,
    summary: o.summary,
    state: o.state,
    error: o.error,
    createdAt: o.createdAt,
    finishedAt: o.finishedAt,
    log: o.log,
  };
}
