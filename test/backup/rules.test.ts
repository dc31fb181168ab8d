// The backup rules as data, without QEMU: states, level resolution, retention; and the digest hashers.
import { test, onTestFinished } from 'vitest';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { HashPool, hashRanges, hashPieces, guestPieces } from '../../electron/core/backup/verify.ts';
import type { StrataError } from '../../electron/core/errors.ts';
import { BACKUP_STATES, canMove, copyPath, needsCleanup, resolveLevel, selectRetention, ancestry, pointsOfDisk, type PointFacts, type CheckpointAnswer } from '../../electron/core/backup/rules.ts';

const ok = (dirtyBytes: number): CheckpointAnswer => ({ state: 'ok', dirtyBytes });
const p = (id: string, level: PointFacts['level'], parent: string | null, createdAt: string, checkpoint: string | null = `cp-${id}`): PointFacts => ({ id, level, parent, checkpoint, createdAt });

test('states: a backup is ok only through writing-manifest, and only ok can be pruned', () => {
  assert.ok(canMove('planned', 'running'));
  assert.ok(canMove('running', 'writing-manifest'));
  assert.ok(canMove('writing-manifest', 'ok'));
  assert.ok(!canMove('running', 'ok'));
  assert.ok(canMove('ok', 'pruned'));
  for (const s of ['failed', 'cancelled', 'pruned'] as const) assert.ok(BACKUP_STATES.every((t) => !canMove(s, t)));
  assert.deepEqual(BACKUP_STATES.filter(needsCleanup), ['planned', 'running', 'writing-manifest']);
});

test('default level: full for a new repository, then inc from the newest checkpoint', () => {
  const first = resolveLevel({ requested: null, since: null, points: [], answer: () => ok(0) });
  assert.deepEqual(first, { ok: true, level: 'full', requested: null, since: null, parent: null, fallback: 'first backup in this repository', dirtyBytes: null });
  const points = [p('full-1', 'full', null, '2026-01-01T00:00:00Z'), p('copy-2', 'copy', null, '2026-01-02T00:00:00Z', null), p('inc-3', 'inc', 'full-1', '2026-01-03T00:00:00Z')];
  const r = resolveLevel({ requested: null, since: null, points, answer: (cp) => (cp === 'cp-inc-3' ? ok(4096) : { state: 'missing' }) });
  assert.deepEqual(r, { ok: true, level: 'inc', requested: null, since: 'cp-inc-3', parent: 'inc-3', fallback: null, dirtyBytes: 4096 });
});

test('diff: since the last full, or --since a backup checkpoint; --since with another level is refused', () => {
  const points = [p('full-1', 'full', null, '2026-01-01'), p('inc-2', 'inc', 'full-1', '2026-01-02'), p('inc-3', 'inc', 'inc-2', '2026-01-03')];
  const d = resolveLevel({ requested: 'diff', since: null, points, answer: () => ok(1) });
  assert.equal(d.ok && d.parent, 'full-1');
  const s = resolveLevel({ requested: null, since: 'cp-inc-2', points, answer: () => ok(1) });
  assert.equal(s.ok && s.level, 'diff');
  assert.equal(s.ok && s.parent, 'inc-2');
  assert.equal(resolveLevel({ requested: 'inc', since: 'cp-inc-2', points, answer: () => ok(1) }).ok, false);
  assert.equal(resolveLevel({ requested: 'diff', since: 'nope', points, answer: () => ok(1) }).ok, false);
  const noFull = resolveLevel({ requested: 'diff', since: null, points: [], answer: () => ok(1) });
  assert.equal(noFull.ok && noFull.level, 'full');
});

test('an unknown or missing checkpoint falls back to full, saying why', () => {
  const points = [p('full-1', 'full', null, '2026-01-01')];
  const u = resolveLevel({ requested: 'inc', since: null, points, answer: () => ({ state: 'unknown', problems: ['layer top.qcow2 has no bitmap'] }) });
  assert.equal(u.ok && u.level, 'full');
  assert.match(u.ok ? u.fallback! : '', /cannot be known: layer top.qcow2 has no bitmap/);
  const m = resolveLevel({ requested: null, since: null, points, answer: () => ({ state: 'missing' }) });
  assert.match(m.ok ? m.fallback! : '', /not in the disk's chain/);
  const copy = resolveLevel({ requested: 'copy', since: null, points, answer: () => ok(0) });
  assert.equal(copy.ok && copy.level, 'copy');
  assert.equal(copy.ok && copy.fallback, null);
});

test('retention keeps the full the kept points need and merges the inc/diffs between into their successor', () => {
  const points = [
    p('full-1', 'full', null, '2026-01-05T10:00:00Z'),
    p('inc-2', 'inc', 'full-1', '2026-01-05T20:00:00Z'),
    p('inc-3', 'inc', 'inc-2', '2026-01-06T10:00:00Z'),
    p('full-4', 'full', null, '2026-01-12T10:00:00Z'),
    p('diff-5', 'diff', 'full-4', '2026-01-13T10:00:00Z'),
    p('inc-6', 'inc', 'diff-5', '2026-01-13T12:00:00Z'),
  ];
  assert.deepEqual(ancestry(points, 'inc-6'), ['inc-6', 'diff-5', 'full-4']);
  const last1 = selectRetention(points, { keepLast: 1, keepDaily: 0, keepWeekly: 0 });
  assert.deepEqual(last1.keep.map((k) => k.id), ['full-4', 'inc-6']);
  assert.deepEqual(last1.remove, ['full-1', 'inc-2', 'inc-3', 'diff-5']);
  assert.deepEqual(last1.merge, [{ into: 'inc-6', from: ['diff-5'], parent: 'full-4' }], 'diff-5 is folded into inc-6, which then builds on full-4');
  assert.deepEqual(last1.keep.find((k) => k.id === 'full-4')!.why, ['needed to restore inc-6']);
  const daily = selectRetention(points, { keepLast: 0, keepDaily: 3, keepWeekly: 0 });
  // newest of 2026-01-13 (inc-6), 2026-01-12 (full-4), 2026-01-06 (inc-3) and what they need
  assert.deepEqual(daily.keep.map((k) => k.id), ['full-1', 'inc-3', 'full-4', 'inc-6']);
  assert.deepEqual(daily.merge, [{ into: 'inc-3', from: ['inc-2'], parent: 'full-1' }, { into: 'inc-6', from: ['diff-5'], parent: 'full-4' }]);
  const weekly = selectRetention(points, { keepLast: 0, keepDaily: 0, keepWeekly: 2 });
  // ISO weeks: 2026-W02 (5..6 Jan: newest inc-3), 2026-W03 (12..13 Jan: newest inc-6)
  assert.deepEqual(weekly.keep.filter((k) => k.why.some((w) => w.startsWith('keep-weekly'))).map((k) => [k.id, k.why[0]]), [
    ['inc-3', 'keep-weekly 2026-W02'],
    ['inc-6', 'keep-weekly 2026-W03'],
  ]);
  assert.deepEqual(selectRetention(points, { keepLast: 0, keepDaily: 0, keepWeekly: 0 }).remove.length, 6);
});

test('merges: keep-last 2 of full ← inc ← inc ← inc folds inc-2 into inc-3; a run of two folds into one; a point two kept ones build on stays', () => {
  const chain = [
    p('full-1', 'full', null, '2026-02-01T10:00:00Z'),
    p('inc-2', 'inc', 'full-1', '2026-02-01T11:00:00Z'),
    p('inc-3', 'inc', 'inc-2', '2026-02-01T12:00:00Z'),
    p('inc-4', 'inc', 'inc-3', '2026-02-01T13:00:00Z'),
  ];
  const last2 = selectRetention(chain, { keepLast: 2, keepDaily: 0, keepWeekly: 0 });
  assert.deepEqual(last2.keep, [{ id: 'full-1', why: ['needed to restore inc-3'] }, { id: 'inc-3', why: ['keep-last'] }, { id: 'inc-4', why: ['keep-last'] }]);
  assert.deepEqual(last2.remove, ['inc-2']);
  assert.deepEqual(last2.merge, [{ into: 'inc-3', from: ['inc-2'], parent: 'full-1' }]);
  const last1 = selectRetention(chain, { keepLast: 1, keepDaily: 0, keepWeekly: 0 });
  assert.deepEqual(last1.merge, [{ into: 'inc-4', from: ['inc-3', 'inc-2'], parent: 'full-1' }], 'one merge, newest first: inc-4 is rebased onto full-1 once');
  assert.deepEqual(last1.keep.map((k) => k.id), ['full-1', 'inc-4']);
  // inc-3 and diff-4 (--since inc-2's checkpoint) both build on inc-2: merging it into both would copy it twice.
  const forked = [chain[0], chain[1], chain[2], p('diff-4', 'diff', 'inc-2', '2026-02-01T13:00:00Z')];
  const f = selectRetention(forked, { keepLast: 2, keepDaily: 0, keepWeekly: 0 });
  assert.deepEqual(f.keep, [{ id: 'full-1', why: ['needed to restore inc-2'] }, { id: 'inc-2', why: ['needed to restore inc-3', 'needed to restore diff-4'] }, { id: 'inc-3', why: ['keep-last'] }, { id: 'diff-4', why: ['keep-last'] }]);
  assert.deepEqual(f.merge, []);
  assert.deepEqual(f.remove, []);
  // Nothing kept builds on a removed point: removed outright, no merge.
  const two = [p('full-1', 'full', null, '2026-02-01T10:00:00Z'), p('inc-2', 'inc', 'full-1', '2026-02-01T11:00:00Z'), p('full-3', 'full', null, '2026-02-02T10:00:00Z')];
  const t = selectRetention(two, { keepLast: 1, keepDaily: 0, keepWeekly: 0 });
  assert.deepEqual([t.keep.map((k) => k.id), t.remove, t.merge], [['full-3'], ['full-1', 'inc-2'], []]);
});

test('digests: a hash pool gives each range its sha256 in order, null past the end; it serves several calls and files, and a failed call names the file and spoils none after it', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'strata-hash-'));
  onTestFinished(() => fs.rmSync(dir, { recursive: true, force: true }));
  const f = path.join(dir, 'data');
  const g = path.join(dir, 'other');
  const data = Buffer.from(Array.from({ length: 3 << 20 }, (_, i) => (i * 7) & 0xff));
  fs.writeFileSync(f, data);
  fs.writeFileSync(g, data.subarray(0, 1 << 20).map((x) => x ^ 0x5a));
  const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');
  // more ranges than threads, uneven sizes, one past the end, one cut off by it
  const ranges = [{ offset: 0, length: 65536 }, { offset: 1000, length: 2 << 20 }, { offset: 3 << 20, length: 4096 }, ...Array.from({ length: 9 }, (_, i) => ({ offset: i * 300000, length: 4096 + i * 77777 })), { offset: (3 << 20) - 10, length: 20 }];
  const want = ranges.map((r) => (r.offset + r.length <= data.length ? sha(data.subarray(r.offset, r.offset + r.length)) : null));
  assert.deepEqual(await hashRanges(f, ranges), want, 'one-off call');
  const pool = new HashPool(2);
  try {
    assert.deepEqual(await pool.hash(f, ranges), want, 'pool, first call');
    await assert.rejects(pool.hash(path.join(dir, 'missing'), ranges), (e: StrataError) => e.code === 'E_IO' && e.message.includes(path.join(dir, 'missing')));
    assert.deepEqual(await pool.hash(g, [{ offset: 0, length: 1 << 20 }]), [sha(fs.readFileSync(g))], 'another file after a failure');
    assert.deepEqual(await pool.hash(f, ranges), want, 'the first file again');
    assert.deepEqual(await pool.hash(f, []), []);
  } finally {
    await pool.close();
  }
  await assert.rejects(async () => pool.hash(f, ranges), /closed/);
});

test('pointsOfDisk: a restored disk starts from its point (and what that needs), then its own backups; other disks ignore its backups', () => {
  const at = (id: string, level: PointFacts['level'], parent: string | null, day: string, source: string) => ({ ...p(id, level, parent, `2026-01-${day}T00:00:00Z`), source });
  const points = [
    at('full-1', 'full', null, '01', '/d.qcow2'),
    at('inc-2', 'inc', 'full-1', '02', '/d.qcow2'),
    at('inc-3', 'inc', 'inc-2', '03', '/d.qcow2'),
    at('inc-4', 'inc', 'inc-2', '05', '/r.qcow2'),
    at('inc-5', 'inc', 'inc-3', '06', '/d.qcow2'),
    at('inc-6', 'inc', 'inc-4', '07', '/r.qcow2'),
  ];
  const restored = [{ image: '/r.qcow2', id: 'inc-2', checkpoint: 'cp-inc-2', restoredAt: '2026-01-04T00:00:00Z' }];
  assert.deepEqual(pointsOfDisk(points, restored, '/r.qcow2').map((x) => x.id), ['full-1', 'inc-2', 'inc-4', 'inc-6']);
  assert.deepEqual(pointsOfDisk(points, restored, '/d.qcow2').map((x) => x.id), ['full-1', 'inc-2', 'inc-3', 'inc-5']);
  // a disk moved elsewhere (no record) is the original disk's history, as before
  assert.deepEqual(pointsOfDisk(points, [], '/moved.qcow2').map((x) => x.id), points.map((x) => x.id));
  // restored again over the same file: its backups from before that restore no longer count
  const again = [...restored, { image: '/r.qcow2', id: 'full-1', checkpoint: 'cp-full-1', restoredAt: '2026-01-08T00:00:00Z' }];
  assert.deepEqual(pointsOfDisk(points, again, '/r.qcow2').map((x) => x.id), ['full-1']);
  const r = resolveLevel({ requested: null, since: null, points: pointsOfDisk(points, restored, '/r.qcow2'), answer: () => ok(1) });
  assert.equal(r.ok && r.parent, 'inc-6');
});

test('copyPath: only an offline full or copy, uncompressed, goes direct', () => {
  const base = { offline: true, since: null, compress: false };
  assert.equal(copyPath(base), 'direct');
  assert.equal(copyPath({ ...base, offline: false }), 'cached', 'a running VM changes its source while it is read');
  assert.equal(copyPath({ ...base, since: 'cp' }), 'cached', 'an incremental or differential');
  assert.equal(copyPath({ ...base, compress: true }), 'cached', 'compressed: the file holds other bytes than the disk');
});

test('guestPieces: runs of data across layers and zero clusters, cut at 32 MiB; null where data has no place in a file (compressed)', async () => {
  const M = 1 << 20;
  const files = ['/top.qcow2', '/base.qcow2'];
  const map = [
    { start: 0, length: 4 * M, depth: 1, present: true, zero: false, data: true, offset: 10 * M },
    { start: 4 * M, length: 64 << 10, depth: 0, present: true, zero: false, data: true, offset: 327680 },
    { start: 4 * M + (64 << 10), length: 64 << 10, depth: 0, present: true, zero: true, data: true },
    { start: 4 * M + (128 << 10), length: 60 * M, depth: 1, present: true, zero: false, data: true, offset: 20 * M },
    { start: 64 * M + (128 << 10), length: 8 * M - (128 << 10), depth: 1, present: false, zero: true, data: false },
    { start: 72 * M, length: 1 * M, depth: 0, present: true, zero: false, data: true, offset: 5 * M },
  ];
  const pieces = guestPieces(map, (d) => files[d] ?? null)!;
  assert.deepEqual(
    pieces.map((p) => [p.start / M, p.length / M]),
    [[0, 32], [32, 32], [64, 1 / 8], [72, 1]],
  );
  assert.deepEqual(pieces[0].segs, [
    { file: '/base.qcow2', offset: 10 * M, length: 4 * M },
    { file: '/top.qcow2', offset: 327680, length: 64 << 10 },
    { zero: 64 << 10 },
    { file: '/base.qcow2', offset: 20 * M, length: 28 * M - (128 << 10) },
  ]);
  assert.deepEqual(pieces[1].segs, [{ file: '/base.qcow2', offset: 48 * M - (128 << 10), length: 32 * M }]);
  assert.equal(guestPieces([{ start: 0, length: M, depth: 0, present: true, zero: false, data: true }], () => '/x'), null, 'compressed');
  assert.equal(guestPieces([{ start: 0, length: M, depth: 3, present: true, zero: false, data: true, offset: 0 }], (d) => files[d] ?? null), null, 'a layer the chain does not have');

  // hashing a piece is hashing the bytes its segments read, in order, zeros included
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'strata-hash-'));
  onTestFinished(() => fs.rmSync(dir, { recursive: true, force: true }));
  const a = path.join(dir, 'a');
  const b = path.join(dir, 'b');
  fs.writeFileSync(a, Buffer.from(Array.from({ length: 3 * M }, (_, i) => (i * 13) & 0xff)));
  fs.writeFileSync(b, Buffer.from(Array.from({ length: M }, (_, i) => (i * 5 + 1) & 0xff)));
  const segs = [{ file: a, offset: 1000, length: 2 * M }, { zero: M + 17 }, { file: b, offset: 7, length: 4096 }, { file: a, offset: 0, length: 10 }];
  const want = createHash('sha256').update(Buffer.concat([fs.readFileSync(a).subarray(1000, 1000 + 2 * M), Buffer.alloc(M + 17), fs.readFileSync(b).subarray(7, 7 + 4096), fs.readFileSync(a).subarray(0, 10)])).digest('hex');
  assert.deepEqual(await hashPieces([segs]), [want], 'on this thread');
  const pool = new HashPool(2, { background: true });
  try {
    assert.deepEqual(await pool.hashPieces([segs, segs.slice(1), [{ file: b, offset: M - 10, length: 20 }]]), [want, createHash('sha256').update(Buffer.concat([Buffer.alloc(M + 17), fs.readFileSync(b).subarray(7, 7 + 4096), fs.readFileSync(a).subarray(0, 10)])).digest('hex'), null]);
    await assert.rejects(pool.hashPieces([[{ zero: 5 }, { file: path.join(dir, 'gone'), offset: 3, length: 4 }]]), (e: StrataError) => e.code === 'E_IO' && e.message.startsWith(`${path.join(dir, 'gone')}: cannot read bytes 3..7`));
  } finally {
    await pool.close();
  }
});
