// The commit that keeps checkpoints (disable the base's bitmaps, commit until READY, carry the top's
// bitmaps, complete, re-enable) with the Strata core killed at several points: the next start rolls
// it back or resumes it, and the image ends in a planned state, checked with qemu-img info and
// qemu-io once QEMU has stored everything, and against the truth: every checkpoint covers every
// block changed since a raw copy of the disk taken when it was made.
import { test } from 'vitest';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { tempDir, qemuImg, qemuIo, run, type Cleanup } from '../helpers/qemu.ts';
import { startDaemon } from '../helpers/storage-daemon.ts';
import { rawCopy, differingBlocks, sinceOf, missedBytes } from '../helpers/truth.ts';

const MiB = 1024 * 1024;
const child = path.join(import.meta.dirname, 'plan-child.ts');

function core(mode: 'run' | 'recover', db: string, socket: string, env: Record<string, string> = {}) {
  const r = spawnSync(process.execPath, ['--import', 'tsx', child, mode, db, socket], { encoding: 'utf8', env: { ...process.env, ...env }, timeout: 60000 });
  return { signal: r.signal, code: r.status, out: r.stdout.trim() ? JSON.parse(r.stdout.trim().split('\n').pop()!) : null, err: r.stderr };
}

async function scenario(t: Cleanup) {
  const dir = tempDir(t);
  const base = path.join(dir, 'base.qcow2');
  const top = path.join(dir, 'top.qcow2');
  qemuImg('create', '-q', '-f', 'qcow2', base, '64M');
  qemuIo(base, ['write -P 0x41 0 8M']);
  qemuImg('bitmap', '--add', base, 'A');
  const truth: Record<string, string> = { A: rawCopy(base, path.join(dir, 'at-A.raw')) };
  qemuIo(base, ['write -P 0x42 8M 8M']);
  qemuImg('bitmap', '--add', base, 'B');
  truth.B = rawCopy(base, path.join(dir, 'at-B.raw'));
  // libvirt's style: the overlay continues both checkpoints with recording bitmaps of the same names.
  qemuImg('create', '-q', '-f', 'qcow2', '-b', 'base.qcow2', '-F', 'qcow2', top);
  qemuImg('bitmap', '--add', top, 'A');
  qemuImg('bitmap', '--add', top, 'B');
  qemuIo(top, ['write -P 0x44 32M 16M']);
  const d = await startDaemon(t, dir, ['--blockdev', `driver=qcow2,node-name=top,file.driver=file,file.filename=${top}`]);
  const stop = async () => {
    d.child.kill('SIGTERM');
    if (d.child.exitCode === null) await new Promise((r) => d.child.once('exit', r));
  };
  return { dir, base, top, truth, db: path.join(dir, 'strata.db'), socket: d.socket, stop };
}

/** Both checkpoints ok in `image`'s chain and covering every block changed since their copies. */
function assertTruth(s: { dir: string; truth: Record<string, string> }, image: string) {
  const now = rawCopy(image, path.join(s.dir, 'now.raw'));
  for (const [name, copy] of Object.entries(s.truth)) {
    const since = sinceOf(image, name);
    assert.equal(since.state, 'ok', `${name}: ${since.problems.join('; ')}`);
    assert.equal(missedBytes(differingBlocks(copy, now), since.extents), 0, `since ${name} covers every changed block`);
  }
}

const ALL_DONE = ['done', 'done', 'done', 'done', 'done', 'done', 'done'];

/** Base bitmaps as qemu-img info reports them: name -> flags. */
function baseBitmaps(base: string): Record<string, string[]> {
  const info = JSON.parse(run('qemu-img', ['info', '--output=json', base]));
  return Object.fromEntries((info['format-specific'].data.bitmaps ?? []).map((b: any) => [b.name, b.flags]));
}

const committed = (base: string) => {
  try {
    qemuIo(base, ['read -P 0x44 32M 16M'], ['-r']);
    return true;
  } catch {
    return false;
  }
};

test('no crash: the plan runs to the end; bitmaps recording again, commit done', { timeout: 90000 }, async (t) => {
  const s = await scenario(t);
  const r = core('run', s.db, s.socket);
  assert.equal(r.code, 0, r.err);
  assert.equal(r.out.state, 'done');
  await s.stop();
  assert.deepEqual(baseBitmaps(s.base), { A: ['auto'], B: ['auto'] });
  assert.ok(committed(s.base));
  assertTruth(s, s.base);
});

test('killed after the first bitmap was disabled: rolled back at the next start', { timeout: 90000 }, async (t) => {
  const s = await scenario(t);
  const r = core('run', s.db, s.socket, { CRASH_AT: 'after-step-0' });
  assert.equal(r.signal, 'SIGKILL');
  const rec = core('recover', s.db, s.socket);
  assert.equal(rec.code, 0, rec.err);
  assert.equal(rec.out[0].state, 'rolled-back');
  assert.match(rec.out[0].resolution, /undid disable 'A'/);
  await s.stop();
  assert.deepEqual(baseBitmaps(s.base), { A: ['auto'], B: ['auto'] });
  assert.equal(committed(s.base), false, 'the commit never ran');
  assertTruth(s, s.top);
});

test('killed while the commit job runs: the job is found again and the plan resumed', { timeout: 90000 }, async (t) => {
  const s = await scenario(t);
  const r = core('run', s.db, s.socket, { CRASH_AT: 'job-running', SPEED: String(8 * MiB) });
  assert.equal(r.signal, 'SIGKILL');
  const rec = core('recover', s.db, s.socket);
  assert.equal(rec.code, 0, rec.err);
  assert.equal(rec.out[0].state, 'done');
  assert.match(rec.out[0].resolution, /resumed after a restart/);
  assert.deepEqual(rec.out[0].steps, ALL_DONE);
  await s.stop();
  assert.deepEqual(baseBitmaps(s.base), { A: ['auto'], B: ['auto'] });
  assert.ok(committed(s.base));
  assertTruth(s, s.base);
});

for (const [point, what] of [
  ['job-ready', 'the job just reached READY'],
  ['after-step-3', "the top's bitmaps were carried, the job waits at READY"],
  ['before-complete', 'just before the switch-over'],
  ['before-step-5', 'after the switch-over, before the bitmaps record again'],
  ['before-step-6', 'before the temporary bitmap is removed'],
]) {
  test(`killed when ${what} (${point}): resumed and finished by the next start`, { timeout: 90000 }, async (t) => {
    const s = await scenario(t);
    const r = core('run', s.db, s.socket, { CRASH_AT: point });
    assert.equal(r.signal, 'SIGKILL', r.err);
    const rec = core('recover', s.db, s.socket);
    assert.ok(rec.out, `recovery printed nothing: ${rec.err} (${rec.signal ?? rec.code})`);
    assert.equal(rec.out[0].state, 'done', `${rec.out[0].resolution} ${rec.err}`);
    assert.deepEqual(rec.out[0].steps, ALL_DONE);
    await s.stop();
    assert.deepEqual(baseBitmaps(s.base), { A: ['auto'], B: ['auto'] }, 'no temporary bitmap is left, both record');
    assert.ok(committed(s.base));
    assertTruth(s, s.base);
  });
}

test('killed after a command was sent but before the journal said so: QEMU is asked', { timeout: 90000 }, async (t) => {
  // 'before-step-1' fires after step 0 is journaled done; kill just after step 1 was sent instead by
  // crashing at after-step-1 and rewriting step 1 to 'running' as a crash mid-journal would leave it.
  const s = await scenario(t);
  const r = core('run', s.db, s.socket, { CRASH_AT: 'after-step-1' });
  assert.equal(r.signal, 'SIGKILL');
  const { default: Database } = await import('better-sqlite3');
  const db = new Database(s.db);
  db.prepare("UPDATE plan_steps SET state = 'running' WHERE idx = 1").run();
  db.close();
  const rec = core('recover', s.db, s.socket);
  assert.equal(rec.out[0].state, 'rolled-back', rec.err);
  assert.match(rec.out[0].resolution, /undid disable 'B'.*disable 'A'/);
  await s.stop();
  assert.deepEqual(baseBitmaps(s.base), { A: ['auto'], B: ['auto'] });
  assertTruth(s, s.top);
});
