// Job history: a row per job, a row per state it went through, errors and notes.
import type { Db } from './db.ts';
import type { JobRecordInfo } from '../contract.ts';
import type { QmpLogLine } from '../history/contract.ts';
import { QmpTrafficLog } from './qmp-traffic.ts';

export interface JobRecord {
  id: number;
  qemuId: string;
  connection: string;
  type: string;
  args: unknown;
  state: string;
  error: string | null;
  createdAt: string;
  finishedAt: string | null;
  events: { at: string; state: string; note: string | null }[];
  /** the QMP of the job, from its connection's traffic log */
  qmp: QmpLogLine[];
}

export class JobStore {
  private traffic: QmpTrafficLog;
  constructor(private db: Db) {
    this.traffic = new QmpTrafficLog(db);
  }

  /** session: the traffic-log session of the connection the job runs on (null: not logged) */
  create(qemuId: string, connection: string, type: string, args: unknown, state: string, session: number | null = null): number {
    const now = new Date().toISOString();
    const id = Number(
      this.db
        .prepare('INSERT INTO jobs (qemu_id, connection, type, args_json, state, created_at, session) VALUES (?, ?, ?, ?, ?, ?, ?)')
        .run(qemuId, connection, type, JSON.stringify(args), state, now, session).lastInsertRowid,
    );
    this.event(id, state, null, now);
    return id;
  }

  event(id: number, state: string, note: string | null, at = new Date().toISOString()): void {
    const finished = state === 'null' || state === 'lost';
    this.db.transaction(() => {
      this.db.prepare('INSERT INTO job_events (job, at, state, note) VALUES (?, ?, ?, ?)').run(id, at, state, note);
      this.db.prepare(`UPDATE jobs SET state = ?${finished ? ', finished_at = ?' : ''} WHERE id = ?`).run(...(finished ? [state, at, id] : [state, id]));
    })();
  }

  setError(id: number, error: string): void {
    this.db.prepare('UPDATE jobs SET error = ? WHERE id = ?').run(error, id);
  }

  list(limit = 100): JobRecord[] {
    const rows = this.db.prepare('SELECT * FROM jobs ORDER BY id DESC LIMIT ?').all(Math.max(1, Math.min(1000, limit))) as any[];
    const ev = this.db.prepare('SELECT at, state, note FROM job_events WHERE job = ? ORDER BY rowid');
    return rows.map((r) => ({
      id: r.id,
      qemuId: r.qemu_id,
      connection: r.connection,
      type: r.type,
      args: JSON.parse(r.args_json),
      state: r.state,
      error: r.error,
      createdAt: r.created_at,
      finishedAt: r.finished_at,
      events: ev.all(r.id) as JobRecord['events'],
      qmp: this.traffic.forJob({ record: r.id, session: r.session ?? null, qemuId: r.qemu_id }),
    }));
  }
}

/** The one mapping of a job record to the wire (the start arguments stay in the store). */
export function toJobRecordInfo(r: JobRecord): JobRecordInfo {
  return {
    id: r.id,
    qemuId: r.qemuId,
    connection: r.connection,
    type: r.type,
    state: r.state,
    error: r.error,
    createdAt: r.createdAt,
    finishedAt: r.finishedAt,
    events: r.events,
    qmp: r.qmp,
  };
}
