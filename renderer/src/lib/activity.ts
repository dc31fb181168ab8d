// How the History view reads the core's activity feed (history:activity): one row per entry, in the
// feed's own order (the core sorts it newest first), with the words and tone of its state.
import type { ActivityEntry, BackupActivityInfo, BackupActivityState, JobRecordInfo, QmpLogLine } from '../../../electron/core/contract';
import { jobTone, jobTypeLabel, operationTone, planTone, STATE_LABEL, type Tone } from './jobs';

/** The filter's and the row's name for a kind ('op' for the feed's 'operation': the e2e tests read it). */
export type ActivityKind = 'scan' | 'job' | 'op' | 'plan' | 'backup';

export const ACTIVITY_KIND: Record<ActivityEntry['kind'], ActivityKind> = { scan: 'scan', job: 'job', operation: 'op', plan: 'plan', backup: 'backup' };
export const ACTIVITY_KIND_LABEL: Record<ActivityKind, string> = { scan: 'Scan', job: 'Job', op: 'Bitmap change', plan: 'Plan', backup: 'Backup' };

/** The words of a backup activity's action, and the tone of each of its states. */
export const BACKUP_ACTION_LABEL: Record<BackupActivityInfo['action'], string> = { backup: 'Backup', restore: 'Restore', verify: 'Verify', prune: 'Prune' };
export const BACKUP_STATE_TONE: Record<BackupActivityState, Tone> = { running: 'live', ok: 'ok', failed: 'danger', cancelled: 'neutral', damaged: 'warn' };

/** How a state reads: the badge's tone and word, and the state's own name. */
export interface StateLook {
  state: string;
  label: string;
  tone: Tone;
}

export interface ActivityRow {
  kind: ActivityKind;
  key: string;
  /** when it began, as the feed says */
  at: string;
  title: string;
  file: string;
  look: StateLook;
  /** an error was recorded */
  failed: boolean;
  /** lower-case text the file filter searches */
  haystack: string;
  entry: ActivityEntry;
}

/** Unique within the feed: backups and the other backup actions have journals of their own. */
function recordKey(e: ActivityEntry): string {
  return e.kind === 'scan' ? `${e.scan.id}` : e.kind === 'job' ? `${e.job.id}` : e.kind === 'operation' ? `${e.operation.id}` : e.kind === 'plan' ? `${e.plan.id}` : `${e.backup.action}-${e.backup.id}`;
}

function backupTitle(b: BackupActivityInfo): string {
  const ids = (what: string) => b.points.filter((p) => p.what === what).map((p) => p.id);
  switch (b.action) {
    case 'backup':
      return `Backup ${b.points[0]?.id ?? ''}${b.level ? ` (${b.level})` : ''}`;
    case 'restore':
      return `Restore ${b.points[0]?.id ?? b.summary.split(' ')[1]}`;
    case 'verify':
      return b.points.length ? `Verify ${b.points.length} point${b.points.length === 1 ? '' : 's'}${ids('damaged').length ? `: ${ids('damaged').join(', ')} damaged` : ''}` : 'Verify';
    case 'prune': {
      const gone = ids('removed');
      return gone.length ? `Prune: remove ${gone.join(', ')}` : 'Prune: nothing to remove';
    }
  }
}

export function activityRow(e: ActivityEntry): ActivityRow {
  const kind = ACTIVITY_KIND[e.kind];
  const base = { kind, key: `${kind}:${recordKey(e)}`, at: e.at, entry: e };
  const searchable = (...parts: (string | null)[]) => parts.map((p) => p ?? '').join('\n').toLowerCase();
  switch (e.kind) {
    case 'scan': {
      const s = e.scan;
      const changed = s.changes.length > 0;
      return {
        ...base,
        title: changed ? s.changes[0] + (s.changes.length > 1 ? ` (+${s.changes.length - 1} more)` : '') : s.first ? 'First scan' : 'Scanned, no change',
        file: s.image,
        look: { state: changed ? 'changed' : 'unchanged', label: changed ? 'changed' : s.first ? 'first scan' : 'no change', tone: changed ? 'accent' : 'neutral' },
        failed: false,
        haystack: searchable(s.image, ...s.layers.map((l) => l.path), ...s.changes),
      };
    }
    case 'job': {
      const j = e.job;
      return {
        ...base,
        title: `${jobTypeLabel(j.type)} job`,
        file: j.connection,
        look: { state: j.state, label: STATE_LABEL[j.state] ?? j.state, tone: jobTone(j.state, j.error) },
        failed: !!j.error,
        haystack: searchable(j.connection, j.type, j.qemuId, j.error),
      };
    }
    case 'operation': {
      const o = e.operation;
      return {
        ...base,
        title: o.summary,
        file: o.target,
        look: { state: o.state, label: o.state, tone: operationTone(o.state) },
        failed: !!o.error,
        haystack: searchable(o.target, o.summary, o.kind, o.error),
      };
    }
    case 'plan': {
      const p = e.plan;
      return {
        ...base,
        title: p.summary,
        file: p.kind,
        look: { state: p.state, label: p.state, tone: planTone(p.state) },
        failed: !!p.error,
        haystack: searchable(p.kind, p.summary, p.resolution, p.error, ...p.steps.map((x) => `${x.label} ${x.note ?? ''}`)),
      };
    }
    case 'backup': {
      const b = e.backup;
      return {
        ...base,
        title: backupTitle(b),
        file: b.file ?? b.repo,
        look: { state: b.state, label: b.state, tone: BACKUP_STATE_TONE[b.state] },
        failed: b.state === 'failed',
        haystack: searchable(b.action, b.repo, b.file, b.summary, b.note, ...b.points.map((p) => `${p.id} ${p.what} ${p.note ?? ''}`)),
      };
    }
  }
}

/** One line of QMP as it was on the wire: what Strata sent ('out') or QEMU said ('in'). */
export type QmpLine = QmpLogLine;

/**
 * A job's state changes, each with the QMP of the job (from the core's traffic log) that happened
 * while it was in that state: a line belongs to the last state change at or before its time, and a
 * JOB_STATUS_CHANGE event to the state it announces (it arrives a moment before Strata records it).
 */
export interface JobStateChange {
  state: string;
  at: string;
  note: string | null;
  qmp: QmpLine[];
}

function statusOf(line: string): string | null {
  try {
    const s = JSON.parse(line)?.data?.status;
    return typeof s === 'string' ? s : null;
  } catch {
    return null;
  }
}

export function jobStateChanges(j: JobRecordInfo): JobStateChange[] {
  const out: JobStateChange[] = [];
  for (const e of j.events) {
    const last = out[out.length - 1];
    if (last && last.state === e.state && !e.note) continue;
    out.push({ state: e.state, at: e.at, note: e.note, qmp: [] });
  }
  if (!out.length) return out;
  let k = 0;
  for (const l of j.qmp) {
    while (k + 1 < out.length && out[k + 1].at <= l.at) k++;
    const announced = l.event === 'JOB_STATUS_CHANGE' ? statusOf(l.line) : null;
    if (announced && out[k].state !== announced) {
      const m = out.findIndex((c, i) => i > k && c.state === announced);
      if (m > k) k = m;
    }
    out[k].qmp.push(l);
  }
  return out;
}
