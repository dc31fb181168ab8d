// The job tables, checked against the lifecycles QEMU documents and against a real job's events.
import { test } from 'vitest';
import assert from 'node:assert/strict';
import path from 'node:path';
import { JOB_STATES, TRANSITIONS, allowedVerbs, applyStatus, canTransition, isVerbAllowed, type JobState } from '../../electron/core/jobs/states.ts';
import { QmpClient } from '../../electron/core/qmp/client.ts';
import { tempDir, qemuImg, qemuIo } from '../helpers/qemu.ts';
import { startDaemon } from '../helpers/storage-daemon.ts';

test('every transition target is a state, and null is terminal', () => {
  for (const s of JOB_STATES) for (const t of TRANSITIONS[s]) assert.ok(JOB_STATES.includes(t), `${s} -> ${t}`);
  assert.deepEqual(TRANSITIONS.null, []);
});

test('documented lifecycles walk through legal transitions only', () => {
  const paths: JobState[][] = [
    ['created', 'running', 'waiting', 'pending', 'concluded', 'null'], // stream / intermediate commit
    ['created', 'running', 'ready', 'waiting', 'pending', 'concluded', 'null'], // active commit, completed
    ['created', 'running', 'ready', 'standby', 'ready', 'aborting', 'concluded', 'null'], // paused at ready, cancelled
    ['created', 'running', 'paused', 'running', 'aborting', 'concluded', 'null'], // error
  ];
  for (const p of paths) {
    const job = { state: 'undefined' as JobState, history: [] };
    for (const s of p) assert.deepEqual(applyStatus(job, s), { ok: true, changed: true }, `${job.state} -> ${s}`);
    assert.equal(job.history.length, p.length);
  }
});

test('impossible moves are refused and leave the job unchanged', () => {
  const job = { state: 'concluded' as JobState, history: [] };
  const r = applyStatus(job, 'running');
  assert.equal(r.ok, false);
  assert.equal(job.state, 'concluded');
  assert.equal(canTransition('paused', 'ready'), false);
  assert.equal(canTransition('ready', 'paused'), false); // pausing a ready job is standby
});

test('verbs follow the table', () => {
  assert.deepEqual(allowedVerbs('ready'), ['cancel', 'pause', 'resume', 'set-speed', 'complete']);
  assert.deepEqual(allowedVerbs('concluded'), ['dismiss']);
  assert.deepEqual(allowedVerbs('pending'), ['cancel', 'finalize']);
  assert.equal(isVerbAllowed('complete', 'running'), false);
  assert.equal(isVerbAllowed('complete', 'standby'), true);
  assert.deepEqual(allowedVerbs('null'), []);
});

test('a real active commit: every JOB_STATUS_CHANGE is legal, and QEMU refuses a verb the table refuses', async (t) => {
  const dir = tempDir(t);
  const base = path.join(dir, 'base.qcow2');
  const top = path.join(dir, 'top.qcow2');
  qemuImg('create', '-q', '-f', 'qcow2', base, '4M');
  qemuImg('create', '-q', '-f', 'qcow2', '-b', base, '-F', 'qcow2', top);
  qemuIo(top, ['write -P 7 0 1M']);
  const d = await startDaemon(t, dir, ['--blockdev', `driver=qcow2,node-name=top,file.driver=file,file.filename=${top}`]);
  const c = await QmpClient.connect(d.socket);
  t.onTestFinished(() => c.close());
  const job = { state: 'undefined' as JobState, history: [] as { state: JobState; at: number }[] };
  const refused: string[] = [];
  c.onEvent((e) => {
    if (e.event === 'JOB_STATUS_CHANGE' && e.data?.id === 'j1') {
      const r = applyStatus(job, e.data.status as JobState);
      if (!r.ok) refused.push(r.reason);
    }
  });
  const ready = c.waitEvent((e) => e.event === 'BLOCK_JOB_READY');
  await c.execute('block-commit', { 'job-id': 'j1', device: 'top', 'auto-dismiss': false });
  await ready;
  // finalize is not allowed in ready: the table says so, and so does QEMU.
  assert.equal(isVerbAllowed('finalize', job.state), false);
  await assert.rejects(c.execute('job-finalize', { id: 'j1' }), (e: any) => e.errorClass === 'GenericError');
  const done = c.waitEvent((e) => e.event === 'JOB_STATUS_CHANGE' && e.data?.status === 'concluded');
  await c.execute('job-complete', { id: 'j1' });
  await done;
  assert.deepEqual(allowedVerbs(job.state), ['dismiss']);
  await c.execute('job-dismiss', { id: 'j1' });
  await new Promise((r) => setTimeout(r, 50));
  assert.deepEqual(refused, []);
  assert.deepEqual(job.history.map((h) => h.state), ['created', 'running', 'ready', 'waiting', 'pending', 'concluded', 'null']);
});
