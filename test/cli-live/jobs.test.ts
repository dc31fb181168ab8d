// strata jobs: live (query-jobs of a running QEMU) and recorded (the history database, which is
// never created just to be listed).
import { test } from 'vitest';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { tempDir, qemuImg, qemuIo } from '../helpers/qemu.ts';
import { startDaemon } from '../helpers/storage-daemon.ts';
import { openDb } from '../../electron/core/store/db.ts';
import { JobStore } from '../../electron/core/store/jobs.ts';
import { allowedVerbs } from '../../electron/core/jobs/states.ts';
import { strata, withQmp } from './helpers.ts';

test('jobs --socket shows a speed-limited block-stream running, with progress and the verbs QEMU allows', { timeout: 60000 }, async (t) => {
  const dir = tempDir(t);
  const home = path.join(dir, 'home');
  const base = path.join(dir, 'base.qcow2');
  const top = path.join(dir, 'top.qcow2');
  qemuImg('create', '-q', '-f', 'qcow2', base, '64M');
  qemuIo(base, ['write -P 1 0 48M']);
  qemuImg('create', '-q', '-f', 'qcow2', '-b', base, '-F', 'qcow2', top);
  const d = await startDaemon(t, dir, ['--blockdev', `driver=qcow2,node-name=top,file.driver=file,file.filename=${top}`]);
  // 1 MiB/s over 48 MiB: the job runs far longer than the test looks at it.
  await withQmp(d.socket, (q) => q.execute('block-stream', { 'job-id': 'slow', device: 'top', speed: 1024 * 1024, 'auto-dismiss': false }));

  const j = await strata(home, 'jobs', '--socket', d.socket, '--json');
  assert.equal(j.code, 0, j.err);
  const jobs = JSON.parse(j.out);
  assert.equal(jobs.length, 1);
  const job = jobs[0];
  assert.deepEqual(Object.keys(job), ['id', 'type', 'state', 'current', 'total', 'percent', 'speed', 'verbs', 'error']);
  assert.equal(job.id, 'slow');
  assert.equal(job.type, 'stream');
  assert.equal(job.state, 'running');
  assert.equal(job.speed, 1024 * 1024);
  assert.deepEqual(job.verbs, allowedVerbs('running'));
  assert.ok(job.total > 0 && job.current < job.total, JSON.stringify(job));
  assert.ok(job.percent >= 0 && job.percent < 100);
  assert.equal(job.error, null);

  const text = await strata(home, 'jobs', '--socket', d.socket);
  assert.equal(text.code, 0, text.err);
  assert.match(text.out, /^id\s+type\s+state\s+progress\s+done\s+speed\s+verbs\n/);
  assert.match(text.out, /\nslow\s+stream\s+running\s+\d+\.\d%\s+.* of 64 MiB\s+1 MiB\/s\s+cancel, pause, resume, set-speed\n/);

  // The CLI connected and left: the monitor is free again, and it changed nothing.
  const after = await withQmp(d.socket, async (q) => {
    const list = await q.execute<any[]>('query-jobs');
    await q.execute('job-cancel', { id: 'slow' });
    return list;
  });
  assert.deepEqual(after.map((x) => [x.id, x.status]), [['slow', 'running']]);
  assert.ok(!fs.existsSync(home), 'no data dir created for a live look');

  const none = await startDaemon(t, dir, []);
  const empty = await strata(home, 'jobs', '--socket', none.socket);
  assert.equal(empty.code, 0, empty.err);
  assert.equal(empty.out, `No jobs in ${none.socket}.\n`);
  const bad = await strata(home, 'jobs', '--socket', path.join(dir, 'missing.sock'));
  assert.equal(bad.code, 2);
  assert.match(bad.err, /^strata: .*missing\.sock: cannot connect to the QMP monitor: no such socket\n$/);
});

test('jobs without a history database says so and creates nothing', async (t) => {
  const dir = tempDir(t);
  const home = path.join(dir, 'not-yet');
  const r = await strata(home, 'jobs');
  assert.equal(r.code, 0, r.err);
  assert.match(r.out, /^No jobs recorded yet/);
  const j = await strata(home, 'jobs', '--json');
  assert.equal(j.code, 0, j.err);
  assert.deepEqual(JSON.parse(j.out), []);
  assert.ok(!fs.existsSync(home), 'STRATA_HOME was not created');
  assert.deepEqual(fs.readdirSync(dir), []);
});

test('jobs lists the recorded jobs newest first; --verbose adds the state changes; bad arguments exit 2', async (t) => {
  const dir = tempDir(t);
  const home = path.join(dir, 'home');
  const db = openDb(path.join(home, 'strata.db'));
  const store = new JobStore(db);
  const a = store.create('strata-1-1', '/run/vm1.qmp', 'block-stream', { device: 'top' }, 'undefined');
  for (const s of ['created', 'running', 'waiting', 'pending', 'concluded', 'null']) store.event(a, s, null);
  const b = store.create('strata-1-2', 'daemon top.qcow2', 'block-commit', { device: 'top' }, 'undefined');
  store.event(b, 'created', null);
  store.setError(b, 'Input/output error');
  store.event(b, 'lost', 'the connection closed');
  db.close();

  const j = await strata(home, 'jobs', '--json');
  assert.equal(j.code, 0, j.err);
  const list = JSON.parse(j.out);
  assert.deepEqual(list.map((x: any) => [x.qemuId, x.type, x.state, x.error]), [
    ['strata-1-2', 'block-commit', 'lost', 'Input/output error'],
    ['strata-1-1', 'block-stream', 'null', null],
  ]);
  assert.ok(!('events' in list[0]));
  const v = JSON.parse((await strata(home, 'jobs', '--json', '--verbose')).out);
  assert.deepEqual(v[1].events.map((e: any) => e.state), ['undefined', 'created', 'running', 'waiting', 'pending', 'concluded', 'null']);

  const text = await strata(home, 'jobs', '--verbose', '--limit', '5');
  assert.equal(text.code, 0, text.err);
  assert.match(text.out, /^#\s+started\s+type\s+job\s+state\s+finished\s+connection\n/);
  assert.match(text.out, /\n2\s+\S+ \S+\s+block-commit\s+strata-1-2\s+lost\s+/);
  assert.match(text.out, /#2 strata-1-2: Input\/output error/);
  assert.match(text.out, /#1 \S+ \S+ concluded\n/);

  for (const args of [['jobs', 'extra'], ['jobs', '--limit', '0'], ['jobs', '--socket', '/x.sock', '--limit', '3'], ['jobs', '--bogus']]) {
    const r = await strata(home, ...args);
    assert.equal(r.code, 2, `${args.join(' ')}: ${r.err}`);
    assert.equal(r.err.trim().split('\n').length, 1);
  }
  const help = await strata(home, 'jobs', '--help');
  assert.equal(help.code, 0);
  assert.match(help.out, /^Usage: strata jobs/);
});
