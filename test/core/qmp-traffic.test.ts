// The QMP traffic log on a real SQLite file: sessions, lines found by their tags, a job's events by
// its QEMU id in its own session only, and the bounds (line length, untagged lines kept).
import { test } from 'vitest';
import assert from 'node:assert/strict';
import path from 'node:path';
import { openDb } from '../../electron/core/store/db.ts';
import { QmpTrafficLog, LINE_KEEP, UNTAGGED_KEEP } from '../../electron/core/store/qmp-traffic.ts';
import { JobStore } from '../../electron/core/store/jobs.ts';
import type { QmpTraffic } from '../../electron/core/qmp/client.ts';
import { tempDir } from '../helpers/qemu.ts';

const line = (dir: 'out' | 'in', text: string, extra: Partial<QmpTraffic> = {}): QmpTraffic => ({ dir, line: text, at: new Date().toISOString(), call: null, tag: null, event: null, qemuJob: null, ...extra });

function setup(t: Parameters<typeof tempDir>[0]) {
  const db = openDb(path.join(tempDir(t), 'strata.db'));
  t.onTestFinished(() => {
    db.close();
  });
  return { db, log: new QmpTrafficLog(db) };
}

test('a job sees its own commands and its events in its session, not another session\'s job of the same id', (t) => {
  const { db, log } = setup(t);
  const jobs = new JobStore(db);
  const a = log.open('vm-a', '/run/a.sock');
  const b = log.open('vm-b', '/run/b.sock');
  const rec = jobs.create('job0', 'vm-a', 'block-stream', {}, 'undefined', a.id);
  a.sink(line('out', '{"execute":"block-stream","id":"strata-3"}', { call: 'strata-3', tag: { job: rec } }));
  a.sink(line('in', '{"timestamp": {}, "event": "JOB_STATUS_CHANGE", "data": {"status": "created", "id": "job0"}}', { event: 'JOB_STATUS_CHANGE', qemuJob: 'job0' }));
  a.sink(line('in', '{"return": {}, "id": "strata-3"}', { call: 'strata-3', tag: { job: rec } }));
  a.sink(line('out', '{"execute":"query-jobs","id":"strata-4"}', { call: 'strata-4' }));
  b.sink(line('in', '{"event": "JOB_STATUS_CHANGE", "data": {"status": "created", "id": "job0"}}', { event: 'JOB_STATUS_CHANGE', qemuJob: 'job0' }));
  const got = jobs.list()[0].qmp;
  assert.deepEqual(got.map((l) => l.line), [
    '{"execute":"block-stream","id":"strata-3"}',
    '{"timestamp": {}, "event": "JOB_STATUS_CHANGE", "data": {"status": "created", "id": "job0"}}',
    '{"return": {}, "id": "strata-3"}',
  ]);
  assert.equal(got[1].event, 'JOB_STATUS_CHANGE');
  // The connection's log has everything it said, in order.
  assert.equal(log.recent(a.id).length, 4);
  assert.equal(log.recent(b.id).length, 1);
  assert.deepEqual(log.recent(a.id, 2).map((l) => l.line), ['{"return": {}, "id": "strata-3"}', '{"execute":"query-jobs","id":"strata-4"}']);
});

test('operations and plan steps find their tagged lines; a step also gets its job\'s lines', (t) => {
  const { db, log } = setup(t);
  const s = log.open('daemon', '/run/d.sock');
  const jobs = new JobStore(db);
  s.sink(line('out', 'op-out', { tag: { operation: 4 } }));
  s.sink(line('in', 'op-in', { tag: { operation: 4 } }));
  s.sink(line('out', 'step0', { tag: { plan: 2, step: 0 } }));
  const rec = jobs.create('plan-job', 'daemon', 'block-commit', {}, 'undefined', s.id);
  s.sink(line('out', 'start', { tag: { plan: 2, step: 1, job: rec } }));
  s.sink(line('in', 'event', { event: 'JOB_STATUS_CHANGE', qemuJob: 'plan-job' }));
  s.sink(line('out', 'dismiss', { tag: { job: rec } }));
  assert.deepEqual(log.forOperation(4).map((l) => l.line), ['op-out', 'op-in']);
  assert.deepEqual(log.forStep(2, 0, null).map((l) => l.line), ['step0']);
  assert.deepEqual(log.forStep(2, 1, 'plan-job').map((l) => l.line), ['start', 'event', 'dismiss']);
  assert.deepEqual(log.forOperation(5), []);
});

test('bounded: a long line is cut and says so; untagged lines beyond the newest kept are dropped, tagged ones never', (t) => {
  const { log } = setup(t);
  const s = log.open('daemon', '/run/d.sock');
  s.sink(line('in', 'x'.repeat(LINE_KEEP + 10), { tag: { operation: 1 } }));
  const [long] = log.forOperation(1);
  assert.equal(long.line.slice(0, LINE_KEEP), 'x'.repeat(LINE_KEEP));
  assert.match(long.line.slice(LINE_KEEP), /^ … \(10 more characters not kept\)$/);
  for (let i = 0; i < UNTAGGED_KEEP + 700; i++) s.sink(line('out', `poll ${i}`));
  log.trim();
  const kept = log.recent(s.id, 5000);
  assert.equal(log.forOperation(1).length, 1, 'the tagged line stays');
  const polls = log.recent(s.id, 5000).filter((l) => l.line.startsWith('poll'));
  assert.equal(polls[polls.length - 1].line, `poll ${UNTAGGED_KEEP + 699}`);
  assert.ok(kept.length <= 5000);
  // Exactly the newest UNTAGGED_KEEP untagged lines are left.
  const count = (log as any).db.prepare('SELECT COUNT(*) AS n FROM qmp_traffic WHERE operation IS NULL').get().n;
  assert.equal(count, UNTAGGED_KEEP);
});

test('a session is closed with its reason once', (t) => {
  const { db, log } = setup(t);
  const s = log.open('vm', '/run/vm.sock');
  s.close('the connection closed');
  s.close('closed by Strata');
  assert.deepEqual(db.prepare('SELECT close_reason AS r FROM qmp_sessions WHERE id = ?').get(s.id), { r: 'the connection closed' });
});
