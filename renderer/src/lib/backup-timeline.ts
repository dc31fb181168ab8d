// The Backups view's timeline, as plain data the component only draws: every point of a repository
// (and every backup that failed or was cancelled, from the activity history) placed on a time axis,
// one lane per level, with what each point is restored from, what depends on it, its last verify
// and, while a prune plan is shown, whether it goes or stays.
//
// The axis is grouped by calendar day. Within a day, x follows createdAt linearly at one scale shared
// by every day (so spacing means the same everywhere), except that two points are never closer than
// `minGap` pixels; between days the axis breaks, and the break says how long the gap was. The scale is
// the largest that fits the width; when even the minimum spacing does not fit, the layout is wider
// than asked and the view scrolls.
import type { BackupActivityInfo, BackupLevel, BackupPoint, BackupPrunePreview } from '../../../electron/core/contract.ts';

export const LEVEL_ORDER: readonly BackupLevel[] = ['full', 'inc', 'diff', 'copy'];
export const LEVEL_LABEL: Record<BackupLevel, string> = { full: 'full', inc: 'incremental', diff: 'differential', copy: 'copy' };

/** A backup that did not complete: never a point, shown so that it is not mistaken for one. */
export interface BackupAttempt {
  /** unique on the timeline (a cancelled inc-2's id is taken again by the next backup) */
  key: string;
  id: string;
  level: BackupLevel;
  state: 'failed' | 'cancelled';
  createdAt: string;
  finishedAt: string | null;
  note: string | null;
}

/** One verify of the repository: what it said of each point it checked. */
export interface VerifyRecord {
  at: string;
  points: { id: string; ok: boolean; note: string | null }[];
}

export interface VerifyLook {
  state: 'ok' | 'damaged' | 'never';
  /** when the verify that said so ran */
  at: string | null;
  note: string | null;
}

export interface TimelineMark {
  key: string;
  kind: 'point' | 'attempt';
  id: string;
  level: BackupLevel;
  /** createdAt in ms */
  at: number;
  /** its state as listed ('ok' for a point that is good), 'failed' or 'cancelled' for an attempt */
  state: string;
  /** a completed point in the manifest, listed ok: the only kind that can be restored */
  good: boolean;
  x: number;
  /** index into layout.lanes */
  lane: number;
  /** file size, null for an attempt (it left no file) */
  bytes: number | null;
  /** 0..1: sqrt(bytes / largest point's bytes), so a small incremental next to a large full stays visible */
  sizeRatio: number;
  durationSeconds: number | null;
  verify: VerifyLook;
  /** the point it is restored from (its parent), null for a full, a copy or an attempt */
  parent: string | null;
  /** what a restore reads: itself, then its parents down to its full */
  chain: string[];
  /** the points restored through it (all its descendants): removing it alone would orphan them */
  dependents: string[];
  /** while a prune plan is shown */
  prune: 'keep' | 'remove' | null;
  point: BackupPoint | null;
  attempt: BackupAttempt | null;
}

export interface TimelineLink {
  /** the parent's key, then the child's */
  from: string;
  to: string;
  x1: number;
  lane1: number;
  x2: number;
  lane2: number;
  /** the prune plan removes the child (a kept child keeps its parent) */
  goes: boolean;
}

export interface TimelineTick {
  x: number;
  label: string;
}

export interface TimelineGroup {
  key: string;
  label: string;
  /** the first and last mark's x */
  x0: number;
  x1: number;
  ticks: TimelineTick[];
}

export interface TimelineBreak {
  x0: number;
  x1: number;
  label: string;
}

export interface TimelineLayout {
  marks: TimelineMark[];
  links: TimelineLink[];
  groups: TimelineGroup[];
  breaks: TimelineBreak[];
  lanes: { level: BackupLevel; label: string }[];
  width: number;
  /** px per ms within a day (0: every gap is at its minimum) */
  scale: number;
}

export interface TimelineInput {
  points: BackupPoint[];
  attempts?: BackupAttempt[];
  verifies?: VerifyRecord[];
  prune?: Pick<BackupPrunePreview, 'keep' | 'remove'> | null;
}

export interface TimelineOptions {
  width: number;
  /** the least distance between two marks: room for their labels */
  minGap?: number;
  /** room at each end for the first and last mark's labels */
  pad?: number;
  /** the width of a break between two days */
  breakWidth?: number;
  /** a break's width when there is room to spare */
  maxBreakWidth?: number;
  /** least distance between two tick labels */
  tickGap?: number;
  /** the calendar day a time falls on (default: local) */
  dayOf?: (ms: number) => string;
  /** a day's labels, longest first: a group shows the longest that fits before the next group */
  dayLabels?: (ms: number) => string[];
  /** the width of a label's character, to tell whether it fits */
  charWidth?: number;
  tickLabel?: (ms: number, stepMs: number) => string;
}

const MIN = 60_000;
const HOUR = 60 * MIN;
const DAY = 24 * HOUR;
const SEC = 1000;
const TICK_STEPS = [SEC, 2 * SEC, 5 * SEC, 10 * SEC, 15 * SEC, 30 * SEC, MIN, 2 * MIN, 5 * MIN, 10 * MIN, 15 * MIN, 30 * MIN, HOUR, 2 * HOUR, 3 * HOUR, 6 * HOUR, 12 * HOUR];

const pad2 = (n: number) => String(n).padStart(2, '0');
export const localDay = (ms: number) => {
  const d = new Date(ms);
  return `${d.getFullYear()}-${pad2(d.getMonth() + 1)}-${pad2(d.getDate())}`;
};
const dayFmts = [
  new Intl.DateTimeFormat(undefined, { weekday: 'short', day: 'numeric', month: 'short', year: 'numeric' }),
  new Intl.DateTimeFormat(undefined, { day: 'numeric', month: 'short', year: 'numeric' }),
  new Intl.DateTimeFormat(undefined, { day: 'numeric', month: 'short' }),
];
const defaultDayLabels = (ms: number) => dayFmts.map((f) => f.format(new Date(ms)));
const defaultTickLabel = (ms: number, step: number) => {
  const d = new Date(ms);
  return step < MIN ? `${pad2(d.getHours())}:${pad2(d.getMinutes())}:${pad2(d.getSeconds())}` : `${pad2(d.getHours())}:${pad2(d.getMinutes())}`;
};

/** A gap between two days, as a break's label: "20 h", "3 days", "2 weeks", "4 months", "1 year". */
export function formatGap(ms: number): string {
  const plural = (n: number, w: string) => `${n} ${w}${n === 1 ? '' : 's'}`;
  if (ms < DAY) return `${Math.max(1, Math.round(ms / HOUR))} h`;
  const days = Math.round(ms / DAY);
  if (days < 14) return plural(days, 'day');
  if (days < 60) return plural(Math.round(days / 7), 'week');
  if (days < 365) return plural(Math.round(days / 30.44), 'month');
  return plural(Math.round((days / 365.25) * 10) / 10, 'year');
}

/** A repository's failed or cancelled backups and its verifies, out of the activity history (any order). */
export function fromActivity(entries: BackupActivityInfo[], repo: string): { attempts: BackupAttempt[]; verifies: VerifyRecord[] } {
  const dir = repo.replace(/\/+$/, '') || '/';
  const mine = entries.filter((e) => e.repo.replace(/\/+$/, '') === dir);
  const attempts = mine
    .filter((e) => e.action === 'backup' && (e.state === 'failed' || e.state === 'cancelled'))
    .map((e) => {
      const id = e.points[0]?.id ?? `backup-${e.id}`;
      const prefix = id.split('-')[0] as BackupLevel;
      return { key: `attempt-${e.id}`, id, level: e.level ?? (LEVEL_ORDER.includes(prefix) ? prefix : 'full'), state: e.state as 'failed' | 'cancelled', createdAt: e.createdAt, finishedAt: e.finishedAt, note: e.note };
    });
  const verifies = mine
    .filter((e) => e.action === 'verify' && (e.state === 'ok' || e.state === 'damaged'))
    .map((e) => ({ at: e.finishedAt ?? e.createdAt, points: e.points.filter((p) => p.what === 'verified' || p.what === 'damaged').map((p) => ({ id: p.id, ok: p.what === 'verified', note: p.note && dropRepeatedFile(p.note) })) }));
  return { attempts, verifies };
}

/** "F: F: what" (the history's note names the file, and so does each problem) as "F: what". */
function dropRepeatedFile(note: string): string {
  const m = /^(\S+): (.*)$/s.exec(note);
  return m && m[2].startsWith(`${m[1]}: `) ? m[2] : note;
}

/** The newest verify of a point made after the point was (an id can be taken again after a prune). */
export function verifyOf(id: string, createdAt: number, verifies: VerifyRecord[]): VerifyLook {
  let best: VerifyLook = { state: 'never', at: null, note: null };
  for (const v of verifies) {
    const t = Date.parse(v.at);
    if (t < createdAt || (best.at && t <= Date.parse(best.at))) continue;
    const p = v.points.find((x) => x.id === id);
    if (p) best = { state: p.ok ? 'ok' : 'damaged', at: v.at, note: p.note };
  }
  return best;
}

/** Positions of time-sorted marks in day groups at `scale` px/ms: their x, and the total width. */
function place(times: number[], days: string[], scale: number, o: Required<Pick<TimelineOptions, 'minGap' | 'pad'>>, breakWidth: number): { xs: number[]; width: number } {
  const xs: number[] = [];
  let x = o.pad;
  for (let i = 0; i < times.length; i++) {
    if (i > 0) x += days[i] === days[i - 1] ? Math.max(o.minGap, (times[i] - times[i - 1]) * scale) : Math.max(o.minGap, breakWidth);
    xs.push(x);
  }
  return { xs, width: (times.length ? x : 0) + o.pad };
}

/** The time at which the axis reads x, within a group's marks (the axis is linear between two marks). */
function xAt(t: number, times: number[], xs: number[]): number {
  let i = 0;
  while (i < times.length - 2 && times[i + 1] <= t) i++;
  const [t0, t1, x0, x1] = [times[i], times[i + 1] ?? times[i], xs[i], xs[i + 1] ?? xs[i]];
  return t1 === t0 ? x0 : x0 + ((t - t0) / (t1 - t0)) * (x1 - x0);
}

export function layoutTimeline(input: TimelineInput, opts: TimelineOptions): TimelineLayout {
  const o = { minGap: 76, pad: 44, breakWidth: 96, maxBreakWidth: 160, tickGap: 64, charWidth: 6.6, dayOf: localDay, dayLabels: defaultDayLabels, tickLabel: defaultTickLabel, ...opts };
  const verifies = input.verifies ?? [];
  const byId = new Map(input.points.map((p) => [p.id, p]));
  const chainOf = (id: string): string[] => {
    const out: string[] = [];
    for (let p = byId.get(id); p && !out.includes(p.id); p = p.parent ? byId.get(p.parent) : undefined) out.push(p.id);
    return out;
  };
  const keep = new Set(input.prune?.keep.map((k) => k.id) ?? []);
  const remove = new Set(input.prune?.remove.map((r) => r.id) ?? []);
  const biggest = Math.max(1, ...input.points.map((p) => p.bytes));

  const raw: Omit<TimelineMark, 'x' | 'lane'>[] = [
    ...input.points.map((p) => {
      const at = Date.parse(p.createdAt);
      const done = p.finishedAt ? Date.parse(p.finishedAt) : NaN;
      return {
        key: p.id, kind: 'point' as const, id: p.id, level: p.level, at, state: p.state, good: p.state === 'ok',
        bytes: p.bytes, sizeRatio: Math.sqrt(Math.max(0, p.bytes) / biggest), durationSeconds: Number.isFinite(done) ? Math.max(0, (done - at) / 1000) : null,
        verify: verifyOf(p.id, at, verifies), parent: p.parent && byId.has(p.parent) ? p.parent : null, chain: chainOf(p.id),
        dependents: input.points.filter((q) => q.id !== p.id && chainOf(q.id).includes(p.id)).map((q) => q.id),
        prune: input.prune ? (remove.has(p.id) ? ('remove' as const) : keep.has(p.id) ? ('keep' as const) : null) : null,
        point: p, attempt: null,
      };
    }),
    ...(input.attempts ?? []).map((a) => {
      const at = Date.parse(a.createdAt);
      const done = a.finishedAt ? Date.parse(a.finishedAt) : NaN;
      return {
        key: a.key, kind: 'attempt' as const, id: a.id, level: a.level, at, state: a.state, good: false, bytes: null, sizeRatio: 0,
        durationSeconds: Number.isFinite(done) ? Math.max(0, (done - at) / 1000) : null, verify: { state: 'never' as const, at: null, note: null },
        parent: null, chain: [], dependents: [], prune: null, point: null, attempt: a,
      };
    }),
  ].sort((a, b) => a.at - b.at || (a.kind === b.kind ? 0 : a.kind === 'point' ? -1 : 1));

  const lanes = LEVEL_ORDER.filter((l) => raw.some((m) => m.level === l)).map((level) => ({ level, label: LEVEL_LABEL[level] }));
  const times = raw.map((m) => m.at);
  const days = times.map((t) => o.dayOf(t));

  // The largest scale that fits: total width grows with the scale, so halve the interval 60 times.
  const fits = (s: number) => place(times, days, s, o, o.breakWidth).width <= o.width;
  let scale = 0;
  const gaps = times.slice(1).map((t, i) => (days[i + 1] === days[i] ? t - times[i] : 0)).filter((g) => g > 0);
  if (gaps.length && fits(0)) {
    let hi = o.width / Math.min(...gaps);
    if (fits(hi)) scale = hi;
    else {
      let lo = 0;
      for (let k = 0; k < 60; k++) {
        const mid = (lo + hi) / 2;
        if (fits(mid)) lo = mid;
        else hi = mid;
      }
      scale = lo;
    }
  }
  // Room left over (every gap at its minimum, or no gap within a day) widens the breaks, up to a limit.
  let breakWidth = o.breakWidth;
  const breakCount = days.filter((d, i) => i > 0 && d !== days[i - 1]).length;
  const spare = o.width - place(times, days, scale, o, breakWidth).width;
  if (breakCount && spare > 0) breakWidth = Math.min(o.maxBreakWidth, breakWidth + spare / breakCount);
  const { xs, width } = place(times, days, scale, o, breakWidth);

  const laneOf = new Map(lanes.map((l, i) => [l.level, i]));
  const marks: TimelineMark[] = raw.map((m, i) => ({ ...m, x: xs[i], lane: laneOf.get(m.level)! }));
  const markOf = new Map(marks.map((m) => [m.key, m]));
  const links: TimelineLink[] = marks
    .filter((m) => m.parent && markOf.has(m.parent))
    .map((m) => {
      const p = markOf.get(m.parent!)!;
      return { from: p.key, to: m.key, x1: p.x, lane1: p.lane, x2: m.x, lane2: m.lane, goes: m.prune === 'remove' };
    });

  const groups: TimelineGroup[] = [];
  const breaks: TimelineBreak[] = [];
  for (let i = 0; i < marks.length; ) {
    let j = i;
    while (j + 1 < marks.length && days[j + 1] === days[i]) j++;
    const gt = times.slice(i, j + 1);
    const gx = xs.slice(i, j + 1);
    const room = (j + 1 < marks.length ? xs[j + 1] : Math.max(width, o.width)) - gx[0] - 8;
    const labels = o.dayLabels(times[i]);
    const label = labels.find((x) => x.length * o.charWidth <= room) ?? labels[labels.length - 1];
    groups.push({ key: days[i], label, x0: gx[0], x1: gx[gx.length - 1], ticks: ticksOf(gt, gx, scale, o) });
    if (j + 1 < marks.length) breaks.push({ x0: xs[j], x1: xs[j + 1], label: formatGap(times[j + 1] - times[j]) });
    i = j + 1;
  }
  return { marks, links, groups, breaks, lanes, width: Math.max(width, o.width), scale };
}

/** Ticks on round times within one day's span, at least `tickGap` apart on screen (where the axis is not to scale, between two marks it is linear). */
function ticksOf(times: number[], xs: number[], scale: number, o: { tickGap: number; tickLabel: (ms: number, step: number) => string }): TimelineTick[] {
  const span = times[times.length - 1] - times[0];
  if (span <= 0) return [];
  // The day's own px per ms: above the shared scale where marks were pushed apart (at scale 0 the only one).
  const dayScale = Math.max(scale, (xs[xs.length - 1] - xs[0]) / span);
  const step = TICK_STEPS.find((s) => s * dayScale >= o.tickGap) ?? TICK_STEPS[TICK_STEPS.length - 1];
  const ticks: TimelineTick[] = [];
  const tz = new Date(times[0]).getTimezoneOffset() * MIN;
  for (let t = Math.ceil((times[0] - tz) / step) * step + tz; t <= times[times.length - 1]; t += step) {
    const x = xAt(t, times, xs);
    // Where the axis was stretched to its minimum spacing, round times crowd: keep the first of each crowd.
    if (!ticks.length || x - ticks[ticks.length - 1].x >= o.tickGap) ticks.push({ x, label: o.tickLabel(t, step) });
  }
  return ticks;
}

/** Where a key press moves the focus from `key`: along time (left/right, home/end) or to the nearest mark of the lane above or below. */
export function moveFrom(layout: TimelineLayout, key: string | null, press: string): string | null {
  const ms = layout.marks;
  if (!ms.length) return null;
  const i = ms.findIndex((m) => m.key === key);
  if (i < 0) return ms[press === 'End' ? ms.length - 1 : 0].key;
  switch (press) {
    case 'ArrowLeft':
      return ms[Math.max(0, i - 1)].key;
    case 'ArrowRight':
      return ms[Math.min(ms.length - 1, i + 1)].key;
    case 'Home':
      return ms[0].key;
    case 'End':
      return ms[ms.length - 1].key;
    case 'ArrowUp':
    case 'ArrowDown': {
      const here = ms[i];
      const step = press === 'ArrowUp' ? -1 : 1;
      for (let lane = here.lane + step; lane >= 0 && lane < layout.lanes.length; lane += step) {
        const inLane = ms.filter((m) => m.lane === lane);
        if (inLane.length) return inLane.reduce((a, b) => (Math.abs(b.x - here.x) < Math.abs(a.x - here.x) ? b : a)).key;
      }
      return here.key;
    }
    default:
      return null;
  }
}
