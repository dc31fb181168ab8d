// The backup channels through dispatch() of a real service: backup:take answers strata backup
// --json's object and pushes backup:progress while its job runs, backup:list the same rows as
// strata backups --json, backup:restore and backup:verify the CLI's shapes.
import { test, onTestFinished } from 'vitest';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { qemuImg, qemuIo } from '../helpers/qemu.ts';
import { createService, type Service } from '../../electron/core/service.ts';
import { dispatch } from '../../electron/core/dispatch.ts';
import type { ArgOf, BackupProgress, Channel, ResultOf } from '../../electron/core/contract.ts';
import { tmp, makeDisk, strata, bitmapNames, sha256, fingerprint } from './helpers.ts';
import { MANIFEST } from '../../electron/core/backup/repository.ts';
import { MIGRATIONS } from '../../electron/core/store/migrations.ts';
import Database from 'better-sqlite3';

function callOf(service: Service) {
  return async <C extends Channel>(channel: C, arg: ArgOf<C>): Promise<ResultOf<C>> => {
    const r = await dispatch(service, channel, arg);
    if (!r.ok) throw new Error(`${r.error.code}: ${r.error.message}`);
    return r.result as ResultOf<C>;
  };
}

test('backup:take, backup:list, backup:restore and backup:verify answer what the CLI prints', async () => {
  const dir = tmp();
  const disk = makeDisk(dir);
  qemuIo(disk, ['write -P 0x21 0 1M']);
  const home = path.join(dir, 'home');
  const service = createService({ dataDir: home, mode: 'browser' });
  onTestFinished(() => service.close());
  const progress: BackupProgress[] = [];
  service.subscribe((e, p) => {
    if (e === 'backup:progress') progress.push(p as BackupProgress);
  });
  const repo = path.join(dir, 'repo');
  const call = callOf(service);

  const plan = await call('backup:take', { image: disk, repo, dryRun: true });
  assert.equal(plan.dryRun, true);
  assert.equal(plan.level, 'full');
  assert.equal(plan.dirtyBytes, 1 << 20);
  assert.deepEqual(plan.copies, [{ kind: 'allocation', layer: disk }], 'a full copies what the layers hold');
  const full = await call('backup:take', { image: disk, repo, level: 'full' });
  assert.deepEqual(Object.keys(full), ['id', 'level', 'requested', 'fallback', 'checkpoint', 'since', 'file', 'bytes', 'dirtyBytes', 'seconds', 'changesFrom']);
  assert.ok(progress.length > 0, 'backup:progress was pushed');
  assert.ok(progress.every((p) => p.image === disk && p.repo === repo));
  qemuIo(disk, ['write -P 0x22 2M 64k']);
  const inc = await call('backup:take', { image: disk, repo });
  assert.equal(inc.level, 'inc');
  assert.equal(inc.dirtyBytes, 64 << 10);

  const list = await call('backup:list', { repo });
  const cli = await strata(home, ['backups', '--repo', repo, '--json']);
  assert.equal(cli.code, 0, cli.err);
  assert.deepEqual(list, JSON.parse(cli.out));
  assert.deepEqual(list.map((b) => b.level), ['full', 'inc']);

  const to = path.join(dir, 'restored.qcow2');
  const restored = await call('backup:restore', { repo, id: inc.id, to });
  assert.equal(restored.to, to);
  qemuImg('compare', '-q', disk, to);
  const verified = await call('backup:verify', { repo });
  assert.deepEqual(verified.map((v) => [v.id, v.ok]), [[full.id, true], [inc.id, true]]);
  const r = await dispatch(service, 'backup:restore', { repo, id: inc.id, to });
  assert.equal(r.ok ? null : r.error.code, 'E_BAD_INPUT');

  // backup:checkpoints: the catalog's backups whose checkpoint is a bitmap of the chain.
  assert.deepEqual((await call('backup:checkpoints', { image: disk })).map((c) => [c.checkpoint, c.id, c.level, c.repo]), [[full.checkpoint, full.id, 'full', repo], [inc.checkpoint, inc.id, 'inc', repo]]);
  qemuImg('bitmap', '--remove', disk, full.checkpoint!);
  assert.deepEqual((await call('backup:checkpoints', { image: disk })).map((c) => c.id), [inc.id], 'a checkpoint gone from the chain has no marker');
  assert.deepEqual(await call('backup:checkpoints', { image: to }), [], 'the restored image holds no checkpoint of a backup');
});

test('backup:cancel stops a backup mid-way: no partial file, no new checkpoint bitmap, the manifest unchanged', async () => {
  const dir = tmp();
  const disk = makeDisk(dir, '256M');
  qemuIo(disk, ['write -P 0x31 0 1M']);
  const home = path.join(dir, 'home');
  const service = createService({ dataDir: home, mode: 'browser' });
  onTestFinished(() => service.close());
  const repo = path.join(dir, 'repo');
  const call = callOf(service);
  await call('backup:take', { image: disk, repo, level: 'full' });
  qemuIo(disk, ['write -P 0x32 8M 96M']);
  const bitmapsBefore = bitmapNames(disk);
  const manifestBefore = sha256(path.join(repo, MANIFEST));
  const filesBefore = fs.readdirSync(repo).sort();

  // 96 MiB at 16 MiB/s: about 6 s, cancelled at the first progress that has copied something.
  const seen: { midway?: { current: number; total: number; partials: string[] }; cancelling?: Promise<ResultOf<'backup:cancel'>> } = {};
  service.subscribe((e, p) => {
    const pr = p as BackupProgress;
    if (e !== 'backup:progress' || seen.cancelling || pr.current === 0) return;
    seen.midway = { current: pr.current, total: pr.total, partials: fs.readdirSync(repo).filter((n) => n.startsWith('.partial-')) };
    seen.cancelling = call('backup:cancel', { repo });
  });
  const taken = await dispatch(service, 'backup:take', { image: disk, repo, level: 'inc', speed: 16 << 20 });
  assert.equal(taken.ok ? 'ok' : taken.error.message.includes('cancelled'), true, 'backup:take ends as cancelled');
  assert.ok(seen.midway && seen.cancelling, 'the backup was cancelled while it ran');
  const m = seen.midway;
  assert.ok(m.current < m.total, `cancelled mid-way (${m.current} of ${m.total})`);
  assert.deepEqual(m.partials, ['.partial-inc-2.qcow2'], 'the partial file existed while it ran');
  const c = await seen.cancelling;
  assert.equal(c.cancelled, true);
  assert.equal(c.id, 'inc-2');
  assert.match(c.note ?? '', /removed .*\.partial-inc-2\.qcow2/);
  assert.match(c.note ?? '', /removed checkpoint bitmap 'strata-inc-2-/);

  assert.deepEqual(fs.readdirSync(repo).sort(), filesBefore, 'no partial file left in the repository');
  assert.equal(sha256(path.join(repo, MANIFEST)), manifestBefore, 'the manifest is unchanged');
  assert.deepEqual(bitmapNames(disk), bitmapsBefore, 'no new checkpoint bitmap in the source');
  assert.deepEqual((await call('backup:list', { repo })).map((b) => b.id), ['full-1']);
  // Nothing runs any more: a second cancel has nothing to stop, and the next backup is an incremental.
  assert.deepEqual(await call('backup:cancel', { repo }), { cancelled: false, id: null, note: null });
  assert.equal((await call('backup:take', { image: disk, repo })).level, 'inc');
}, 120_000);

/** full-1, inc-2, diff-3 (to full-1), inc-4 (to diff-3) of a small disk, through the channels. */
async function fourPoints(call: ReturnType<typeof callOf>, disk: string, repo: string): Promise<void> {
  const steps: [string, 'full' | 'inc' | 'diff'][] = [['write -P 0x41 0 256k', 'full'], ['write -P 0x42 1M 64k', 'inc'], ['write -P 0x43 2M 64k', 'diff'], ['write -P 0x44 3M 64k', 'inc']];
  for (const [write, level] of steps) {
    qemuIo(disk, [write]);
    assert.equal((await call('backup:take', { image: disk, repo, level })).level, level);
  }
}

test('backup:prune-plan answers strata prune --json plus what every kept point is restored from; backup:prune applies only the plan confirmed', async () => {
  const dir = tmp();
  const disk = makeDisk(dir, '8M');
  const home = path.join(dir, 'home');
  const service = createService({ dataDir: home, mode: 'browser' });
  onTestFinished(() => service.close());
  const call = callOf(service);
  const repo = path.join(dir, 'repo');
  await fourPoints(call, disk, repo);
  const policy = { keepLast: 1, keepDaily: 0, keepWeekly: 0 };

  const before = fingerprint(repo);
  const plan = await call('backup:prune-plan', { repo, ...policy });
  const cli = await strata(home, ['prune', '--repo', repo, '--keep-last', '1', '--json']);
  assert.equal(cli.code, 0, cli.err);
  const { restorable, ...asCli } = plan;
  assert.deepEqual(asCli, JSON.parse(cli.out), 'the plan is strata prune --json');
  // diff-3 only carries inc-4: merged into it, inc-4 then builds on full-1.
  assert.deepEqual(plan.remove.map((r) => [r.id, r.mergedInto]), [['inc-2', null], ['diff-3', 'inc-4']]);
  assert.deepEqual(plan.merge.map((m) => [m.into, m.from, m.parent]), [['inc-4', ['diff-3'], 'full-1']]);
  assert.deepEqual(plan.keep.map((k) => [k.id, k.why]), [['full-1', ['needed to restore inc-4']], ['inc-4', ['keep-last']]]);
  assert.deepEqual(restorable, [{ id: 'full-1', from: ['full-1'] }, { id: 'inc-4', from: ['inc-4', 'full-1'] }]);
  assert.deepEqual(fingerprint(repo), before, 'a plan writes nothing');

  // Nothing kept at all, or a plan that is not the one the repository gives now: refused, nothing written.
  const none = await dispatch(service, 'backup:prune', { repo, keepLast: 0, keepDaily: 0, keepWeekly: 0, remove: [] });
  assert.equal(none.ok ? 'accepted' : none.error.code, 'E_BAD_INPUT');
  const stale = await dispatch(service, 'backup:prune', { repo, ...policy, remove: ['inc-2'] });
  assert.match(stale.ok ? 'accepted' : stale.error.message, /changed since the prune plan was made: it would now remove inc-2, diff-3, not inc-2; nothing was removed/);
  assert.deepEqual(fingerprint(repo), before, 'a refused prune writes nothing');

  const applied = await call('backup:prune', { repo, ...policy, remove: ['inc-2', 'diff-3'] });
  assert.equal(applied.applied, true);
  assert.equal(applied.freedBytes, plan.freedBytes);
  assert.ok(applied.merge[0].grownBytes! > 0, 'inc-4 grew by what it took from diff-3');
  assert.ok(!fs.existsSync(path.join(repo, 'inc-2.qcow2')) && !fs.existsSync(path.join(repo, 'diff-3.qcow2')), 'the removed points’ files are deleted');
  assert.deepEqual((await call('backup:list', { repo })).map((b) => [b.id, b.parent]), [['full-1', null], ['inc-4', 'full-1']]);
  // Every remaining point restores: inc-4 is the disk as it is now.
  const to = path.join(dir, 'inc-4.qcow2');
  await call('backup:restore', { repo, id: 'inc-4', to });
  qemuImg('compare', '-q', disk, to);
  assert.deepEqual((await call('backup:verify', { repo })).map((v) => [v.id, v.ok]), [['full-1', true], ['inc-4', true]]);
}, 120_000);

test('history:activity lists every backup (a cancelled one too), restore, verify and prune, tagged, newest first; a database from before migrations 7 and 8 keeps its backups', async () => {
  const dir = tmp();
  const disk = makeDisk(dir, '256M');
  const home = path.join(dir, 'home');
  // A database as a Strata of schema 6 left it, with one backup journaled.
  fs.mkdirSync(home, { recursive: true });
  const old = new Database(path.join(home, 'strata.db'));
  for (const m of MIGRATIONS.filter((x) => x.version <= 6)) old.exec(m.sql);
  old.pragma('user_version = 6');
  old.prepare("INSERT INTO backup_journal (repo, backup_id, image, partial, final, checkpoint, state, note, created_at, finished_at) VALUES ('/old/repo', 'full-1', '/old/disk.qcow2', '/old/repo/.partial-full-1.qcow2', '/old/repo/full-1.qcow2', 'strata-full-1-x', 'ok', NULL, '2026-01-01T00:00:00.000Z', '2026-01-01T00:00:05.000Z')").run();
  old.close();

  const service = createService({ dataDir: home, mode: 'browser' });
  onTestFinished(() => service.close());
  const call = callOf(service);
  const repo = path.join(dir, 'repo');
  qemuIo(disk, ['write -P 0x71 0 1M']);
  await call('backup:take', { image: disk, repo, level: 'full' });
  qemuIo(disk, ['write -P 0x72 8M 64M']);
  let cancelling: Promise<unknown> | null = null;
  const off = service.subscribe((e, p) => {
    if (e === 'backup:progress' && !cancelling && (p as BackupProgress).current > 0) cancelling = call('backup:cancel', { repo });
  });
  await assert.rejects(call('backup:take', { image: disk, repo, level: 'inc', speed: 16 << 20 }), /cancelled/);
  await cancelling;
  off();
  // The cancelled backup's id was never listed: the next backup takes it.
  assert.equal((await call('backup:take', { image: disk, repo, level: 'inc' })).id, 'inc-2');
  qemuIo(disk, ['write -P 0x73 100M 64k']);
  await call('backup:take', { image: disk, repo, level: 'diff' });
  const to = path.join(dir, 'restored.qcow2');
  await call('backup:restore', { repo, id: 'inc-2', to });
  await assert.rejects(call('backup:restore', { repo, id: 'inc-2', to }), /already exists/);
  await call('backup:verify', { repo });
  await call('backup:prune', { repo, keepLast: 1, keepDaily: 0, keepWeekly: 0, remove: ['inc-2'] });

  const feed = await call('history:activity', { limit: 50 });
  const ours = feed.filter((e) => e.kind === 'backup').map((e) => (e.kind === 'backup' ? e.backup : null)!);
  assert.deepEqual(
    ours.map((b) => [b.action, b.state, b.points.map((p) => `${p.id}:${p.what}`).join(' ')]),
    [
      ['prune', 'ok', 'full-1:kept diff-3:kept inc-2:removed'],
      ['verify', 'ok', 'full-1:verified inc-2:verified diff-3:verified'],
      ['restore', 'failed', ''],
      ['restore', 'ok', 'inc-2:restored'],
      ['backup', 'ok', 'diff-3:taken'],
      ['backup', 'ok', 'inc-2:taken'],
      ['backup', 'cancelled', 'inc-2:cancelled'],
      ['backup', 'ok', 'full-1:taken'],
      ['backup', 'ok', 'full-1:taken'],
    ],
  );
  const [prune, verify, failed, restored, diff, inc, cancelled, full, older] = ours;
  assert.equal(feed.filter((e) => e.kind === 'backup').every((e) => e.at === (e.kind === 'backup' && e.backup.createdAt)), true);
  assert.deepEqual((await call('backup:list', { repo })).map((b) => b.id), ['full-1', 'diff-3']);
  assert.ok(prune.bytes! > 0 && prune.finishedAt, 'the prune says what it freed and when it ended');
  assert.equal(verify.bytes! > 0, true);
  assert.match(failed.note ?? '', /already exists/);
  assert.equal(restored.file, to);
  assert.equal(restored.bytes, fs.statSync(to).blocks * 512);
  assert.deepEqual([diff.level, inc.level, cancelled.level, full.level], ['diff', 'inc', 'inc', 'full']);
  assert.equal(diff.file, disk);
  assert.equal(inc.bytes, null, 'this inc-2 was pruned: no longer listed, so no size');
  assert.equal(cancelled.bytes, null, 'a cancelled backup has no size, even when a later backup took its id');
  assert.ok(diff.bytes! > 0, 'a listed backup has its size');
  assert.match(cancelled.note ?? '', /cancelled; removed .*\.partial-inc-2\.qcow2; removed checkpoint bitmap 'strata-inc-2-/);
  assert.deepEqual([older.repo, older.file, older.createdAt, older.finishedAt], ['/old/repo', '/old/disk.qcow2', '2026-01-01T00:00:00.000Z', '2026-01-01T00:00:05.000Z']);

  // The CLI's restores, verifies and applied prunes land in the same history.
  const cliTo = path.join(dir, 'cli.raw');
  for (const args of [['restore', '--repo', repo, 'diff-3', '--to', cliTo, '--format', 'raw'], ['verify', '--repo', repo, 'full-1'], ['prune', '--repo', repo, '--keep-last', '1', '--yes']]) {
    const r = await strata(home, args);
    assert.equal(r.code, 0, r.err);
  }
  const now = (await call('history:activity', { limit: 50 })).flatMap((e) => (e.kind === 'backup' ? [e.backup] : []));
  assert.deepEqual(now.slice(0, 3).map((b) => [b.action, b.state, b.points.map((p) => `${p.id}:${p.what}`).join(' ')]), [
    ['prune', 'ok', 'full-1:kept diff-3:kept'],
    ['verify', 'ok', 'full-1:verified'],
    ['restore', 'ok', 'diff-3:restored'],
  ]);
  assert.equal(now[2].file, cliTo);
}, 120_000);
