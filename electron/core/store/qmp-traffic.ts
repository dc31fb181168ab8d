// The QMP traffic log: one session per QMP connection Strata opens, and every line sent and
// received on it as it was on the wire. What an operation, a job or a plan step exchanged with QEMU
// is read back from here by its tag; nothing is re-serialized or written by hand.
//
// Bounded: a line is kept up to LINE_KEEP characters (a longer one is cut and says so), and lines
// no operation, job or plan references (query-jobs polls, block graph reads) are kept for the
// newest UNTAGGED_KEEP of them only.
import type { Db } from './db.ts';
import type { QmpTraffic } from '../qmp/client.ts';
import type { QmpLogLine } from '../history/contract.ts';

export const LINE_KEEP = 256 * 1024;
export const UNTAGGED_KEEP = 20000;
const TRIM_EVERY = 500;

export interface TrafficSession {
  id: number;
  /** feed every line of the connection here (QmpClient's onTraffic) */
  sink: (t: QmpTraffic) => void;
  close(reason: string): void;
}

const untagged = 'operation IS NULL AND job IS NULL AND plan IS NULL AND qemu_job IS NULL';

function keep(line: string): string {
  return line.length <= LINE_KEEP ? line : `${line.slice(0, LINE_KEEP)} … (${line.length - LINE_KEEP} more characters not kept)`;
}

export class QmpTrafficLog {
  private inserted = 0;
  constructor(private db: Db) {}

  /** A new session for a QMP connection about to be opened (label: what the user knows it by). */
  open(label: string, socket: string): TrafficSession {
    const id = Number(this.db.prepare('INSERT INTO qmp_sessions (label, socket, opened_at) VALUES (?, ?, ?)').run(label, socket, new Date().toISOString()).lastInsertRowid);
    const ins = this.db.prepare(
      'INSERT INTO qmp_traffic (session, dir, line, at, call_id, event, qemu_job, operation, job, plan, step) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)',
    );
    return {
      id,
      sink: (t) => {
        ins.run(id, t.dir, keep(t.line), t.at, t.call, t.event, t.qemuJob, t.tag?.operation ?? null, t.tag?.job ?? null, t.tag?.plan ?? null, t.tag?.step ?? null);
        if (++this.inserted % TRIM_EVERY === 0) this.trim();
      },
      close: (reason) => {
        this.db.prepare('UPDATE qmp_sessions SET closed_at = ?, close_reason = ? WHERE id = ? AND closed_at IS NULL').run(new Date().toISOString(), reason, id);
      },
    };
  }

  /** Drops the oldest untagged lines beyond the newest UNTAGGED_KEEP. */
  trim(): void {
    const cut = this.db.prepare(`SELECT id FROM qmp_traffic WHERE ${untagged} ORDER BY id DESC LIMIT 1 OFFSET ?`).get(UNTAGGED_KEEP) as { id: number } | undefined;
    if (cut) this.db.prepare(`DELETE FROM qmp_traffic WHERE ${untagged} AND id <= ?`).run(cut.id);
  }

  /** The newest lines of a session, oldest first. */
  recent(session: number, limit = 200): QmpLogLine[] {
    const rows = this.db.prepare('SELECT dir, line, at, event FROM qmp_traffic WHERE session = ? ORDER BY id DESC LIMIT ?').all(session, Math.max(1, Math.min(5000, limit))) as Row[];
    return rows.reverse().map(toLine);
  }

  forOperation(operation: number): QmpLogLine[] {
    return (this.db.prepare('SELECT dir, line, at, event FROM qmp_traffic WHERE operation = ? ORDER BY id').all(operation) as Row[]).map(toLine);
  }

  /** The commands sent for a job (start, verbs) and their replies, and QEMU's events about it. */
  forJob(job: { record: number; session: number | null; qemuId: string }): QmpLogLine[] {
    const rows = this.db
      .prepare('SELECT dir, line, at, event FROM qmp_traffic WHERE job = ? OR (session = ? AND qemu_job = ?) ORDER BY id')
      .all(job.record, job.session ?? -1, job.qemuId) as Row[];
    return rows.map(toLine);
  }

  /**
   * A plan step's lines: what the step sent and received, and for a job step the job's own lines
   * (its verbs and replies, and its events in the sessions the plan's lines are in).
   */
  forStep(plan: number, step: number, qemuJob: string | null): QmpLogLine[] {
    const rows = this.db
      .prepare(
        `SELECT dir, line, at, event FROM qmp_traffic WHERE (plan = @plan AND step = @step)
           OR (@job IS NOT NULL AND job IN (SELECT id FROM jobs WHERE qemu_id = @job))
           OR (@job IS NOT NULL AND qemu_job = @job AND session IN (SELECT DISTINCT session FROM qmp_traffic WHERE plan = @plan))
         ORDER BY id`,
      )
      .all({ plan, step, job: qemuJob }) as Row[];
    return rows.map(toLine);
  }
}

interface Row {
  dir: 'out' | 'in';
  line: string;
  at: string;
  event: string | null;
}
const toLine = (r: Row): QmpLogLine => (r.event ? { dir: r.dir, line: r.line, at: r.at, event: r.event } : { dir: r.dir, line: r.line, at: r.at });
