// The Backups view's timeline layout (renderer/src/lib/backup-timeline.ts), in plain Node: positions
// on a day-grouped time axis, lanes per level, parent links, dependents, verify and prune marks, and
// keyboard moves. Times are built in local time, so the day grouping holds in any time zone.
import { test } from 'vitest';
import assert from 'node:assert/strict';
import { formatGap, fromActivity, layoutTimeline, moveFrom, verifyOf, type BackupAttempt } from '../../renderer/src/lib/backup-timeline.ts';
import type { BackupActivityInfo, BackupLevel, BackupPoint } from '../../electron/core/contract.ts';

const MIN = 60_000;
const at = (day: number, h: number, m = 0, s = 0) => new Date(2026, 11, day, h, m, s).toISOString();

function point(id: string, parent: string | null, createdAt: string, bytes = 1 << 20, seconds = 2): BackupPoint {
  return {
    id, level: id.split('-')[0] as BackupLevel, parent, checkpoint: `strata-${id}`, createdAt, finishedAt: new Date(Date.parse(createdAt) + seconds * 1000).toISOString(),
    file: `/repo/${id}.qcow2`, bytes, state: 'ok', consistency: 'offline', dirtyBytes: bytes, restored: [],
  };
}

const gaps = (xs: number[]) => xs.slice(1).map((x, i) => x - xs[i]);

test('within a day x follows time at one scale; points too close are kept minGap apart', () => {
  const points = [point('full-1', null, at(1, 10, 0)), point('inc-2', 'full-1', at(1, 10, 1)), point('inc-3', 'inc-2', at(1, 12, 0)), point('inc-4', 'inc-3', at(1, 14, 0))];
  const l = layoutTimeline({ points }, { width: 1000, minGap: 50, pad: 20 });
  const xs = l.marks.map((m) => m.x);
  assert.equal(xs[0], 20);
  assert.equal(Math.round(xs[3] + 20), 1000, 'the axis fills the width');
  const g = gaps(xs);
  assert.equal(g[0], 50, 'a minute apart: at the minimum spacing');
  assert.ok(Math.abs(g[1] - 119 * MIN * l.scale) < 1e-6 && Math.abs(g[2] - 120 * MIN * l.scale) < 1e-6, 'the 119 and 120 min gaps at the one shared scale');
  assert.equal(l.width, 1000);
  assert.equal(l.groups.length, 1);
  assert.equal(l.breaks.length, 0);
  // Ticks on round times, none closer than tickGap, in order.
  const t = l.groups[0].ticks;
  assert.ok(t.length >= 2);
  assert.ok(gaps(t.map((x) => x.x)).every((d) => d >= 64));
  assert.ok(t.every((x) => /^\d\d:\d\d$/.test(x.label)));
  assert.ok(t.every((x) => x.x >= xs[0] && x.x <= xs[3]));
});

test('points months apart: one group per day, a break between them that says how long, and the minutes apart stay readable', () => {
  const points = [
    point('full-1', null, new Date(2026, 5, 3, 9, 0).toISOString()),
    point('inc-2', 'full-1', new Date(2026, 5, 3, 9, 2).toISOString()),
    point('full-3', null, at(1, 8, 0)),
    point('inc-4', 'full-3', at(1, 8, 5)),
    point('inc-5', 'inc-4', at(2, 8, 5)),
  ];
  const l = layoutTimeline({ points }, { width: 900, minGap: 60, pad: 30 });
  assert.deepEqual(l.groups.map((g) => g.key), ['2026-06-03', '2026-12-01', '2026-12-02']);
  assert.deepEqual(l.breaks.map((b) => b.label), ['6 months', '1 day']);
  const xs = l.marks.map((m) => m.x);
  assert.ok(gaps(xs).every((d) => d >= 60 - 1e-9), 'never closer than minGap');
  assert.ok(xs[xs.length - 1] + 30 <= 900 + 1e-6, 'fits the width');
  // Within the days, the 5-minute gap is drawn wider than the 2-minute one.
  assert.ok(xs[3] - xs[2] > xs[1] - xs[0]);
  assert.equal(l.breaks[0].x0, xs[1]);
  assert.equal(l.breaks[0].x1, xs[2]);
});

test('a day shows the longest of its labels that fits before the next day', () => {
  const points = [point('full-1', null, at(1, 8)), point('inc-2', 'full-1', at(2, 8)), point('inc-3', 'inc-2', at(3, 8))];
  const dayLabels = (ms: number) => [`Weekday ${new Date(ms).getDate()} December 2026`, `${new Date(ms).getDate()} Dec`];
  // 10 px a character: 96 px between days holds '1 Dec' (50 px), not the long one; the last day has the rest of the width.
  const l = layoutTimeline({ points }, { width: 900, minGap: 60, pad: 30, breakWidth: 96, maxBreakWidth: 96, charWidth: 10, dayLabels });
  assert.deepEqual(l.groups.map((g) => g.label), ['1 Dec', '2 Dec', 'Weekday 3 December 2026']);
});

test('too many points for the width: minimum spacing everywhere and a wider layout (the view scrolls)', () => {
  const points = Array.from({ length: 20 }, (_, i) => point(i ? `inc-${i + 1}` : 'full-1', i ? (i === 1 ? 'full-1' : `inc-${i}`) : null, at(1, 10, i)));
  const l = layoutTimeline({ points }, { width: 400, minGap: 50, pad: 20 });
  assert.equal(l.scale, 0);
  assert.ok(gaps(l.marks.map((m) => m.x)).every((d) => d === 50));
  assert.equal(l.width, 20 + 19 * 50 + 20);
  // Ticks still tell the time: every 2 minutes (100 px), each on the mark taken at that minute.
  const ticks = l.groups[0].ticks;
  assert.equal(ticks.length, 10);
  assert.ok(ticks.every((k, i) => k.x === l.marks[2 * i].x && k.label.endsWith(`:${String(2 * i).padStart(2, '0')}`)));
});

test('lanes only for the levels present, in order full, inc, diff, copy; links from each parent, dependents of a full', () => {
  const points = [point('full-1', null, at(1, 1)), point('inc-2', 'full-1', at(1, 2)), point('diff-3', 'full-1', at(1, 3)), point('inc-4', 'diff-3', at(1, 4)), point('copy-5', null, at(1, 5))];
  const l = layoutTimeline({ points }, { width: 800 });
  assert.deepEqual(l.lanes.map((x) => x.level), ['full', 'inc', 'diff', 'copy']);
  assert.deepEqual(l.marks.map((m) => `${m.id}:${m.lane}`), ['full-1:0', 'inc-2:1', 'diff-3:2', 'inc-4:1', 'copy-5:3']);
  assert.deepEqual(l.links.map((k) => `${k.from}>${k.to}`), ['full-1>inc-2', 'full-1>diff-3', 'diff-3>inc-4']);
  const by = Object.fromEntries(l.marks.map((m) => [m.id, m]));
  assert.deepEqual(by['inc-4'].chain, ['inc-4', 'diff-3', 'full-1']);
  assert.deepEqual(by['full-1'].dependents, ['inc-2', 'diff-3', 'inc-4']);
  assert.deepEqual(by['diff-3'].dependents, ['inc-4']);
  assert.deepEqual(by['copy-5'].dependents, []);
  assert.equal(by['full-1'].durationSeconds, 2);
  const noDiff = layoutTimeline({ points: [point('full-1', null, at(1, 1)), point('inc-2', 'full-1', at(1, 2))] }, { width: 800 });
  assert.deepEqual(noDiff.lanes.map((x) => x.level), ['full', 'inc']);
});

test('size bars: the largest point is 1, the others the square root of their share', () => {
  const l = layoutTimeline({ points: [point('full-1', null, at(1, 1), 1 << 30), point('inc-2', 'full-1', at(1, 2), 1 << 20), point('inc-3', 'inc-2', at(1, 3), 0)] }, { width: 800 });
  assert.deepEqual(l.marks.map((m) => m.sizeRatio), [1, 1 / 32, 0]);
});

test('failed and cancelled backups: marks that are not good, with no size, no parent, no link, never verified', () => {
  const attempts: BackupAttempt[] = [{ key: 'attempt-7', id: 'inc-2', level: 'inc', state: 'cancelled', createdAt: at(1, 2), finishedAt: at(1, 2, 0, 9), note: 'cancelled' }];
  const l = layoutTimeline({ points: [point('full-1', null, at(1, 1)), point('inc-2', 'full-1', at(1, 3))], attempts, verifies: [{ at: at(1, 4), points: [{ id: 'inc-2', ok: true, note: null }] }] }, { width: 800 });
  assert.deepEqual(l.marks.map((m) => `${m.key}:${m.kind}:${m.good}`), ['full-1:point:true', 'attempt-7:attempt:false', 'inc-2:point:true']);
  const a = l.marks[1];
  assert.equal(a.bytes, null);
  assert.equal(a.sizeRatio, 0);
  assert.equal(a.parent, null);
  assert.equal(a.durationSeconds, 9);
  assert.equal(a.verify.state, 'never', 'a verify of the later inc-2 says nothing of the cancelled one');
  assert.deepEqual(l.links.map((k) => `${k.from}>${k.to}`), ['full-1>inc-2']);
  // A point the manifest lists in another state is not good either.
  const odd = layoutTimeline({ points: [{ ...point('full-1', null, at(1, 1)), state: 'failed' }] }, { width: 800 });
  assert.equal(odd.marks[0].good, false);
});

test('verify: the newest verify after the point was taken; one from before it (an id taken again) does not count', () => {
  const created = Date.parse(at(2, 10));
  const vs = [
    { at: at(1, 10), points: [{ id: 'inc-2', ok: true, note: null }] },
    { at: at(2, 12), points: [{ id: 'inc-2', ok: false, note: 'inc-2.qcow2: digest mismatch' }] },
    { at: at(2, 11), points: [{ id: 'inc-2', ok: true, note: null }] },
    { at: at(2, 13), points: [{ id: 'full-1', ok: true, note: null }] },
  ];
  assert.deepEqual(verifyOf('inc-2', created, vs), { state: 'damaged', at: at(2, 12), note: 'inc-2.qcow2: digest mismatch' });
  assert.deepEqual(verifyOf('inc-2', created, vs.slice(0, 1)), { state: 'never', at: null, note: null });
});

test('the prune plan marks which points go and which stay; a link to a point that goes goes with it', () => {
  const points = [point('full-1', null, at(1, 1)), point('inc-2', 'full-1', at(1, 2)), point('diff-3', 'full-1', at(1, 3))];
  const prune = { keep: [{ id: 'full-1', why: ['needed by diff-3'] }, { id: 'diff-3', why: ['last 1'] }], remove: [{ id: 'inc-2', file: '/repo/inc-2.qcow2', bytes: 1, mergedInto: null }] };
  const l = layoutTimeline({ points, prune }, { width: 800 });
  assert.deepEqual(l.marks.map((m) => `${m.id}:${m.prune}`), ['full-1:keep', 'inc-2:remove', 'diff-3:keep']);
  assert.deepEqual(l.links.map((k) => `${k.to}:${k.goes}`), ['inc-2:true', 'diff-3:false']);
  assert.ok(layoutTimeline({ points }, { width: 800 }).marks.every((m) => m.prune === null));
});

test('the activity history gives this repository\'s failed and cancelled backups and its verifies', () => {
  const base = { file: null, level: null, summary: '', bytes: null, note: null, finishedAt: null } as const;
  const entries: BackupActivityInfo[] = [
    { ...base, id: 3, action: 'backup', repo: '/repo', level: 'inc', state: 'cancelled', points: [{ id: 'inc-2', what: 'cancelled', note: null }], createdAt: at(1, 3), note: 'cancelled by the user' },
    { ...base, id: 2, action: 'backup', repo: '/repo', level: 'inc', state: 'ok', points: [{ id: 'inc-2', what: 'taken', note: null }], createdAt: at(1, 2) },
    { ...base, id: 4, action: 'backup', repo: '/other', level: 'full', state: 'failed', points: [{ id: 'full-1', what: 'failed', note: null }], createdAt: at(1, 2) },
    { ...base, id: 1, action: 'verify', repo: '/repo/', state: 'damaged', points: [{ id: 'full-1', what: 'verified', note: null }, { id: 'inc-2', what: 'damaged', note: '/repo/inc-2.qcow2: /repo/inc-2.qcow2: bad' }], createdAt: at(1, 4), finishedAt: at(1, 5) },
    { ...base, id: 5, action: 'verify', repo: '/repo', state: 'failed', points: [], createdAt: at(1, 6) },
  ];
  const r = fromActivity(entries, '/repo');
  assert.deepEqual(r.attempts, [{ key: 'attempt-3', id: 'inc-2', level: 'inc', state: 'cancelled', createdAt: at(1, 3), finishedAt: null, note: 'cancelled by the user' }]);
  assert.deepEqual(r.verifies, [{ at: at(1, 5), points: [{ id: 'full-1', ok: true, note: null }, { id: 'inc-2', ok: false, note: '/repo/inc-2.qcow2: bad' }] }], 'the file named once');
});

test('keys move the focus along time, to the ends, and to the nearest mark of the lane above or below', () => {
  const points = [point('full-1', null, at(1, 1)), point('inc-2', 'full-1', at(1, 2)), point('inc-3', 'inc-2', at(1, 3)), point('full-4', null, at(1, 4)), point('diff-5', 'full-4', at(1, 5))];
  const l = layoutTimeline({ points }, { width: 800 });
  assert.equal(moveFrom(l, null, 'ArrowRight'), 'full-1');
  assert.equal(moveFrom(l, null, 'End'), 'diff-5');
  assert.equal(moveFrom(l, 'full-1', 'ArrowRight'), 'inc-2');
  assert.equal(moveFrom(l, 'full-1', 'ArrowLeft'), 'full-1', 'stops at the first');
  assert.equal(moveFrom(l, 'diff-5', 'ArrowRight'), 'diff-5', 'stops at the last');
  assert.equal(moveFrom(l, 'inc-2', 'Home'), 'full-1');
  assert.equal(moveFrom(l, 'inc-2', 'End'), 'diff-5');
  assert.equal(moveFrom(l, 'inc-3', 'ArrowUp'), 'full-4', 'full-4 is nearer inc-3 than full-1');
  assert.equal(moveFrom(l, 'full-4', 'ArrowDown'), 'inc-3');
  assert.equal(moveFrom(l, 'full-1', 'ArrowUp'), 'full-1', 'no lane above');
  assert.equal(moveFrom(l, 'inc-2', 'ArrowDown'), 'diff-5');
  assert.equal(moveFrom(l, 'inc-2', 'x'), null);
  assert.equal(moveFrom(layoutTimeline({ points: [] }, { width: 800 }), null, 'ArrowRight'), null);
});

test('gaps between days read in hours, days, weeks, months and years', () => {
  assert.deepEqual([2 * 3600e3, 3 * 86400e3, 20 * 86400e3, 95 * 86400e3, 400 * 86400e3, 365.25 * 86400e3].map(formatGap), ['2 h', '3 days', '3 weeks', '3 months', '1.1 years', '1 year']);
});
