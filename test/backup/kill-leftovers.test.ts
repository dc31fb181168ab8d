// Strata SIGKILLed mid-backup, at a step of the backup (the new checkpoint's transaction has just
// started the job: the partial file, the repository lock, the allocation proof's scratch, Strata's
// daemon and, on a running VM, the job, the target and scratch nodes and the backup's bitmaps all
// exist). `strata backups` then removes the files and stops the abandoned daemon, and the next
// backup removes the rest: nothing is left in the repository, in Strata's runtime folder or in the
// VM, no bitmap is in-use, and that backup restores exactly.
import { test, onTestFinished } from 'vitest';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { qemuImg, qemuIo } from '../helpers/qemu.ts';
import { takeBackup } from '../../electron/core/backup/take.ts';
import { MANIFEST } from '../../electron/core/backup/repository.ts';
import { tmp, makeDisk, truthOf, bitmapNames, strata, tsScript, opts, ROOT } from './helpers.ts';
import { startVm, restoresTo } from './vm.ts';
import { createService } from '../../electron/core/service.ts';
import { dispatch } from '../../electron/core/dispatch.ts';

const CHILD = path.join(ROOT, 'test/backup/backup-child.ts');
const K = 1024;
const M = 1024 * K;

const runEntries = (home: string) => (fs.existsSync(path.join(home, 'run')) ? fs.readdirSync(path.join(home, 'run')).sort() : []);
const repoEntries = (repo: string) => fs.readdirSync(repo).sort();

/** A test's Strata home, repository and disk, in DIR. */
const folders = (dir: string) => ({ home: path.join(dir, 'home'), repo: path.join(dir, 'repo'), disk: makeDisk(dir) });

/** Processes whose command line names `file`. */
function holders(file: string): number[] {
  return fs.readdirSync('/proc').filter((p) => /^\d+$/.test(p)).filter((p) => {
    try {
      return fs.readFileSync(`/proc/${p}/cmdline`, 'utf8').includes(file);
    } catch {
      return false;
    }
  }).map(Number);
}

/** An offline chain (an overlay made outside Strata, so the inc needs the allocation scratch) and a backup of it killed as its transaction started the job. */
async function killedOffline(dir: string) {
  const { home, repo, disk } = folders(dir);
  qemuIo(disk, ['write -P 0x11 0 4M']);
  const full = await takeBackup(opts(dir, disk));
  qemuIo(disk, ['write -P 0x21 1M 64k']);
  const top = path.join(dir, 'top.qcow2');
  qemuImg('create', '-q', '-f', 'qcow2', '-b', 'disk.qcow2', '-F', 'qcow2', top);
  qemuIo(top, ['write -P 0x31 6M 128k']);

  const killed = await tsScript(CHILD, home, [JSON.stringify({ image: top, repo })], { CRASH_AT: 'transaction' });
  assert.equal(killed.code, null, `killed: ${killed.err}`);
  // What it left: the proof that the kill came at a point where all of it exists.
  assert.deepEqual(repoEntries(repo), ['.partial-inc-2.qcow2', `${full.id}.qcow2`, MANIFEST, 'strata-backups.lock']);
  const run = runEntries(home);
  assert.equal(run.length, 2, run.join(', '));
  assert.match(run[0], /^backup-allocation-\d+-inc-2\.qcow2$/);
  assert.match(run[1], /^qsd-\d+-/);
  assert.equal(holders(top).length, 1, 'its storage daemon still holds the image');
  return { home, repo, disk, top, full };
}

test('offline: killed as the transaction started the job; strata backups removes the files and the daemon, the next backup the checkpoint; it restores exactly', async () => {
  const dir = tmp();
  const { home, repo, disk, top, full } = await killedOffline(dir);
  const listed = await strata(home, ['backups', '--repo', repo, '--json']);
  assert.equal(listed.code, 0, listed.err);
  assert.deepEqual(JSON.parse(listed.out).map((b: any) => b.id), [full.id]);
  assert.match(listed.err, /stopped the storage daemon .* it left holding/);
  assert.match(listed.err, /removed .*\.partial-inc-2\.qcow2/);
  assert.match(listed.err, /removed .*backup-allocation-\d+-inc-2\.qcow2 \(left by Strata pid \d+, which is no longer running\)/);
  assert.deepEqual(repoEntries(repo), [`${full.id}.qcow2`, MANIFEST]);
  assert.deepEqual(runEntries(home), []);
  assert.deepEqual(holders(top), []);
  assert.ok(!bitmapNames(top).some((n) => n.includes('in-use')), bitmapNames(top).join(', '));

  const r = await strata(home, ['backup', top, '--repo', repo, '--json']);
  assert.equal(r.code, 0, r.err);
  assert.match(r.err, /backup inc-2 was interrupted .*removed checkpoint bitmap 'strata-inc-2-/);
  const inc = JSON.parse(r.out);
  assert.deepEqual([inc.level, inc.changesFrom, inc.since], ['inc', 'allocation', full.checkpoint]);
  assert.deepEqual(bitmapNames(top), [`top.qcow2:${inc.checkpoint}`, `disk.qcow2:${full.checkpoint}`], 'the interrupted checkpoint is gone, none in-use');
  assert.deepEqual(repoEntries(repo), [`${full.id}.qcow2`, `${inc.id}.qcow2`, MANIFEST]);
  assert.deepEqual(runEntries(home), []);
  await restoresTo(repo, dir, inc.id, truthOf(top, dir, 'inc'));
}, 180000);

test('a running VM: killed as the transaction started the job; the next backup cancels the job, removes its nodes and bitmaps from the VM, and restores exactly', async () => {
  const dir = tmp();
  const { home, repo, disk } = folders(dir);
  const vm = await startVm(dir, disk);
  await vm.write('vm', 0x11, 0, 4 * M);
  const full = await takeBackup({ live: { socket: vm.sock, node: 'vm' }, repo, level: null, since: null, compress: false, dryRun: false, dataDir: home });
  await vm.write('vm', 0x21, 1 * M, 64 * K);
  await vm.snapshot(path.join(dir, 'top.qcow2'), disk);
  await vm.write('ovl', 0x31, 6 * M, 128 * K);

  const killed = await tsScript(CHILD, home, [JSON.stringify({ live: { socket: vm.sock, node: 'ovl' }, repo })], { CRASH_AT: 'transaction' });
  assert.equal(killed.code, null, `killed: ${killed.err}`);
  const inVm = async () => {
    const jobs = (await vm.look.execute<any[]>('query-jobs')).map((j) => j.id);
    const nodes = (await vm.look.execute<any[]>('query-named-block-nodes', { flat: true })).map((n) => String(n['node-name'])).filter((n) => !n.startsWith('#'));
    return { jobs, nodes: nodes.sort(), ovl: await vm.bitmaps('ovl') };
  };
  const left = await inVm();
  assert.equal(left.jobs.length, 1);
  assert.match(left.jobs[0], /^strata-backup-\d+-/);
  assert.equal(left.nodes.length, 4, left.nodes.join(', '));
  assert.ok(left.nodes.some((n) => /^strata-bk-\d+-inc-2$/.test(n)) && left.nodes.some((n) => /^strata-bk-alloc-\d+-inc-2$/.test(n)), left.nodes.join(', '));
  assert.equal(left.ovl.length, 3, left.ovl.join(', ')); // the new checkpoint, the merged set, the bridge
  assert.deepEqual(repoEntries(repo), ['.partial-inc-2.qcow2', `${full.id}.qcow2`, MANIFEST, 'strata-backups.lock']);
  assert.equal(runEntries(home).length, 1);

  const listed = await strata(home, ['backups', '--repo', repo]);
  assert.equal(listed.code, 0, listed.err);
  assert.deepEqual(repoEntries(repo), [`${full.id}.qcow2`, MANIFEST]);
  assert.deepEqual(runEntries(home), []);

  await vm.write('ovl', 0x41, 9 * M, 64 * K);
  const r = await strata(home, ['backup', '--socket', vm.sock, '--node', 'ovl', '--repo', repo, '--json']);
  assert.equal(r.code, 0, r.err);
  assert.match(r.err, /cancelled the backup job strata-backup-\d+-/);
  const inc = JSON.parse(r.out);
  assert.deepEqual([inc.level, inc.changesFrom, inc.since], ['inc', 'allocation', full.checkpoint]);
  assert.deepEqual(await inVm(), { jobs: [], nodes: ['ovl', 'vm'], ovl: [inc.checkpoint] });
  assert.deepEqual(await vm.bitmaps('vm'), [full.checkpoint]);
  assert.deepEqual(repoEntries(repo), [`${full.id}.qcow2`, `${inc.id}.qcow2`, MANIFEST]);
  assert.deepEqual(runEntries(home), []);
  await restoresTo(repo, dir, inc.id, vm.truth('inc'));
}, 180000);

test('offline: killed mid-backup; the app\'s start removes the files and stops the daemon, and says the repository changed', async () => {
  const dir = tmp();
  const { home, repo, top, full } = await killedOffline(dir);
  const service = createService({ dataDir: home, mode: 'browser' });
  onTestFinished(() => service.close());
  // At start, before anything is asked: the journal names the repository, the tidy runs and says so.
  const changed = await new Promise<unknown>((resolve) => service.subscribe((e, p) => e === 'backup:changed' && resolve(p)));
  assert.deepEqual(changed, { repo, why: 'recovered' });
  assert.deepEqual(repoEntries(repo), [`${full.id}.qcow2`, MANIFEST]);
  assert.deepEqual(runEntries(home), []);
  assert.deepEqual(holders(top), []);
  const r = await dispatch(service, 'backup:list', { repo });
  assert.ok(r.ok);
  assert.deepEqual((r.result as any[]).map((b) => b.id), [full.id]);
}, 180000);

test('a backup that is alive (paused at the same step) keeps everything: strata backups leaves its files, daemon and lock, and it then finishes', async () => {
  const dir = tmp();
  const { home, repo, disk } = folders(dir);
  qemuIo(disk, ['write -P 0x11 0 4M']);
  const full = await takeBackup(opts(dir, disk));
  qemuIo(disk, ['write -P 0x21 1M 64k']);
  let pid = 0;
  const child = tsScript(CHILD, home, [JSON.stringify({ image: disk, repo })], { CRASH_AT: 'transaction', SIGNAL: 'SIGSTOP' }, (p) => (pid = p));
  // Stopped at the step: its partial file and its daemon exist (a stopped process cannot write more).
  while (!(fs.existsSync(repo) && repoEntries(repo).includes('.partial-inc-2.qcow2') && runEntries(home).length === 1 && fs.readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].startsWith('T'))) {
    await new Promise((r) => setTimeout(r, 5));
  }
  const before = { repo: repoEntries(repo), run: runEntries(home), holders: holders(disk) };
  const listed = await strata(home, ['backups', '--repo', repo]);
  assert.equal(listed.code, 0, listed.err);
  assert.equal(listed.err, '', 'nothing said, nothing removed');
  assert.deepEqual({ repo: repoEntries(repo), run: runEntries(home), holders: holders(disk) }, before);
  process.kill(pid, 'SIGCONT');
  const done = await child;
  assert.equal(done.code, 0, done.err);
  assert.equal(done.out.trim(), 'finished');
  assert.deepEqual(repoEntries(repo), [`${full.id}.qcow2`, 'inc-2.qcow2', MANIFEST]);
  await restoresTo(repo, dir, 'inc-2', truthOf(disk, dir, 'inc'));
}, 180000);
