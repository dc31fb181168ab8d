// Faults and bad input: a cancelled backup, a storage daemon killed mid-backup, a Strata killed
// mid-backup, a read-only repository folder; a folder that is not a repository, a damaged manifest,
// an unknown id, an image held by another QEMU. Nothing half-done is listed, no partial file and no
// new checkpoint bitmap stay behind, the next backup works and restores exactly, and bad input
// writes nothing.
import { test } from 'vitest';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { qemuIo } from '../helpers/qemu.ts';
import { takeBackup } from '../../electron/core/backup/take.ts';
import { restoreBackup } from '../../electron/core/backup/restore.ts';
import { Repository } from '../../electron/core/backup/repository.ts';
import { openDb } from '../../electron/core/store/db.ts';
import { tmp, makeDisk, truthOf, sameDisk, bitmapNames, strata, fingerprint, sha256, opts } from './helpers.ts';

const leftovers = (repo: string) => fs.readdirSync(repo).filter((n) => n.startsWith('.partial') || n.endsWith('.tmp'));

function daemonPid(home: string): number | null {
  const run = path.join(home, 'run');
  for (const d of fs.existsSync(run) ? fs.readdirSync(run) : []) {
    const f = path.join(run, d, 'qsd.pid');
    if (fs.existsSync(f)) return Number.parseInt(fs.readFileSync(f, 'utf8'), 10);
  }
  return null;
}

/** A disk whose full backup takes long enough to be interrupted, with one good full and inc. */
async function started(dir: string) {
  const disk = makeDisk(dir, '1G');
  qemuIo(disk, ['write -P 0x11 0 8M']);
  const full = await takeBackup(opts(dir, disk));
  qemuIo(disk, ['write -P 0x12 1M 64k']);
  const inc = await takeBackup(opts(dir, disk));
  const truth = truthOf(disk, dir, 'good');
  qemuIo(disk, ['write -P 0x13 16M 500M']);
  return { disk, full, inc, truth };
}

async function nextBackupRestoresExactly(dir: string, disk: string): Promise<string | null> {
  const next = await takeBackup(opts(dir, disk));
  const to = path.join(dir, `after-${next.id}.raw`);
  await restoreBackup({ repo: path.join(dir, 'repo'), id: next.id, to, format: 'raw', force: false });
  assert.ok(sameDisk(to, truthOf(disk, dir, `after-${next.id}`)), 'the next backup restores exactly');
  return next.fallback;
}

test('cancel mid-backup: nothing listed, no partial file, no new checkpoint; the next inc works', async () => {
  const dir = tmp();
  const { disk, inc } = await started(dir);
  const before = bitmapNames(disk);
  const ctl = new AbortController();
  await assert.rejects(takeBackup(opts(dir, disk, { signal: ctl.signal, onProgress: () => ctl.abort() })), /cancelled/);
  const repo = Repository.open(path.join(dir, 'repo'));
  assert.deepEqual(repo.manifest.backups.map((b) => b.id), ['full-1', 'inc-2']);
  assert.deepEqual(leftovers(repo.dir), []);
  assert.deepEqual(bitmapNames(disk), before, 'the cancelled backup left no checkpoint bitmap');
  const db = openDb(path.join(dir, 'home', 'strata.db'));
  assert.equal((db.prepare("SELECT state FROM backup_journal ORDER BY id DESC LIMIT 1").get() as any).state, 'cancelled');
  db.close();
  assert.equal(await nextBackupRestoresExactly(dir, disk), null, 'still incremental');
  assert.equal(Repository.open(repo.dir).manifest.backups[2].since, inc.checkpoint);
}, 120000);

test('the storage daemon killed mid-backup: nothing listed, no partial, no in-use bitmap left; the next backup is a full', async () => {
  const dir = tmp();
  const { disk } = await started(dir);
  let killed = false;
  await assert.rejects(
    takeBackup(opts(dir, disk, {
      onProgress: () => {
        const pid = daemonPid(path.join(dir, 'home'));
        if (!killed && pid) {
          killed = true;
          process.kill(pid, 'SIGKILL');
        }
      },
    })),
  );
  assert.ok(killed);
  const repo = Repository.open(path.join(dir, 'repo'));
  assert.equal(repo.manifest.backups.length, 2);
  assert.deepEqual(leftovers(repo.dir), []);
  const names = bitmapNames(disk);
  assert.ok(!names.some((n) => n.includes('in-use')), `no in-use bitmap: ${names}`);
  assert.ok(!names.some((n) => n.includes('strata-full-3') || n.includes('strata-inc-3')));
  const fallback = await nextBackupRestoresExactly(dir, disk);
  assert.match(String(fallback), /not in the disk's chain/);
}, 120000);

test('Strata killed mid-backup: the next strata backup cleans up, says so, and works', async () => {
  const dir = tmp();
  const home = path.join(dir, 'home');
  const { disk } = await started(dir);
  const repoDir = path.join(dir, 'repo');
  let pid = 0;
  const run = strata(home, ['backup', disk, '--repo', repoDir, '--json'], (p) => (pid = p));
  // Kill it once the copy is under way.
  for (let i = 0; i < 4000; i++) {
    const partial = fs.readdirSync(repoDir).find((n) => n.startsWith('.partial'));
    if (partial && daemonPid(home) && fs.statSync(path.join(repoDir, partial)).size > 2 << 20) break;
    await new Promise((r) => setTimeout(r, 5));
  }
  process.kill(pid, 'SIGKILL');
  await run;
  assert.equal(Repository.open(repoDir).manifest.backups.length, 2, 'nothing half-done is listed');
  const r = await strata(home, ['backup', disk, '--repo', repoDir, '--json']);
  assert.equal(r.code, 0, r.err);
  assert.match(r.err, /backup inc-3 was interrupted .*removed .*\.partial-inc-3\.qcow2/);
  assert.deepEqual(leftovers(repoDir), []);
  const doc = JSON.parse(r.out);
  assert.ok(!bitmapNames(disk).some((n) => n.includes('in-use')));
  const to = path.join(dir, 'after.raw');
  await restoreBackup({ repo: repoDir, id: doc.id, to, format: 'raw', force: false });
  assert.ok(sameDisk(to, truthOf(disk, dir, 'after')));
  // no daemon is left holding the image
  assert.ok(!fs.readdirSync('/proc').some((p) => /^\d+$/.test(p) && (() => { try { return fs.readFileSync(`/proc/${p}/cmdline`, 'utf8').includes(disk); } catch { return false; } })()));
}, 120000);

test('a read-only repository: a clear error naming it, the repository and the disk unchanged', async () => {
  const dir = tmp();
  const disk = makeDisk(dir);
  qemuIo(disk, ['write -P 0x11 0 1M']);
  const repoDir = path.join(dir, 'repo');
  // root writes through a read-only mode, so as root (CI) the repository is a tmpfs remounted
  // read-only; otherwise the folder's mode is enough.
  const root = process.getuid?.() === 0;
  if (root) {
    fs.mkdirSync(repoDir);
    assert.ok(spawnSyncOk('mount', ['-t', 'tmpfs', '-o', 'size=64m', 'tmpfs', repoDir]), 'mount a tmpfs (root)');
  }
  try {
    await takeBackup(opts(dir, disk));
    const before = fingerprint(repoDir);
    const bitmaps = bitmapNames(disk);
    if (root) assert.ok(spawnSyncOk('mount', ['-o', 'remount,ro', repoDir]), 'remount it read-only');
    else fs.chmodSync(repoDir, 0o555);
    const r = await strata(path.join(dir, 'home'), ['backup', disk, '--repo', repoDir]);
    if (!root) fs.chmodSync(repoDir, 0o755);
    assert.equal(r.code, 2, r.err);
    assert.match(r.err, new RegExp(repoDir));
    assert.deepEqual(fingerprint(repoDir), before);
    assert.deepEqual(bitmapNames(disk), bitmaps, 'no checkpoint was left in the disk');
  } finally {
    if (root) spawnSyncOk('umount', [repoDir]);
  }
}, 60000);

test('bad input: not a repository, a damaged manifest, an unknown id, an image held by another QEMU, an existing restore target', async () => {
  const dir = tmp();
  const home = path.join(dir, 'home');
  const disk = makeDisk(dir);
  qemuIo(disk, ['write -P 0x11 0 1M']);
  const other = path.join(dir, 'other');
  fs.mkdirSync(other);
  fs.writeFileSync(path.join(other, 'notes.txt'), 'mine');
  const diskSum = sha256(disk);
  let r = await strata(home, ['backup', disk, '--repo', other]);
  assert.equal(r.code, 2);
  assert.match(r.err, /other: not a Strata backup repository/);
  assert.deepEqual(fingerprint(other), { 'notes.txt': sha256(path.join(other, 'notes.txt')) });
  assert.equal(sha256(disk), diskSum, 'the image was not opened read-write');

  const repoDir = path.join(dir, 'repo');
  await takeBackup(opts(dir, disk));
  const manifest = path.join(repoDir, 'strata-backups.json');
  fs.writeFileSync(manifest, fs.readFileSync(manifest, 'utf8').slice(0, 100));
  const before = fingerprint(repoDir);
  const diskSum2 = sha256(disk);
  for (const args of [['backup', disk, '--repo', repoDir], ['backups', '--repo', repoDir], ['verify', '--repo', repoDir]]) {
    r = await strata(home, args);
    assert.equal(r.code, 2, args.join(' '));
    assert.match(r.err, /strata-backups\.json: damaged backup manifest: not valid JSON/);
  }
  assert.deepEqual(fingerprint(repoDir), before);
  assert.equal(sha256(disk), diskSum2);

  const repo2 = path.join(dir, 'repo2');
  await takeBackup(opts(dir, disk, { repo: repo2 }));
  r = await strata(home, ['restore', '--repo', repo2, 'inc-9', '--to', path.join(dir, 'x.raw')]);
  assert.equal(r.code, 2);
  assert.match(r.err, /no backup 'inc-9'/);
  assert.ok(!fs.existsSync(path.join(dir, 'x.raw')));
  fs.writeFileSync(path.join(dir, 'exists.raw'), 'keep');
  r = await strata(home, ['restore', '--repo', repo2, 'full-1', '--to', path.join(dir, 'exists.raw'), '--format', 'raw']);
  assert.equal(r.code, 2);
  assert.match(r.err, /exists\.raw: already exists; pass --force/);
  assert.equal(fs.readFileSync(path.join(dir, 'exists.raw'), 'utf8'), 'keep');
  r = await strata(home, ['restore', '--repo', repo2, 'full-1', '--to', path.join(dir, 'exists.raw'), '--format', 'raw', '--force', '--json']);
  assert.equal(r.code, 0, r.err);
  assert.deepEqual(Object.keys(JSON.parse(r.out)), ['id', 'to', 'bytes', 'checkpoint']);

  // An image held by another QEMU (a storage daemon standing in for a VM).
  const before2 = fingerprint(repo2);
  const qsd = spawn('qemu-storage-daemon', ['--blockdev', `driver=qcow2,node-name=vm,file.driver=file,file.filename=${disk}`], { stdio: 'ignore' });
  try {
    await new Promise((res) => setTimeout(res, 300));
    r = await strata(home, ['backup', disk, '--repo', repo2]);
    assert.equal(r.code, 2);
    assert.match(r.err, /disk\.qcow2: in use by another QEMU/);
  } finally {
    qsd.kill('SIGTERM');
    await new Promise((res) => qsd.once('exit', res));
  }
  assert.deepEqual(fingerprint(repo2), before2);
}, 120000);

test('a full repository disk (a small tmpfs): a clear error, the repository still good', async () => {
  const dir = tmp();
  const repoDir = path.join(dir, 'repo');
  fs.mkdirSync(repoDir);
  // Mounting needs root, as CI runs; a test that cannot set up its full disk fails, it never skips.
  assert.ok(spawnSyncOk('mount', ['-t', 'tmpfs', '-o', 'size=6m', 'tmpfs', repoDir]), 'mount a 6 MiB tmpfs (needs root)');
  try {
    const disk = makeDisk(dir);
    qemuIo(disk, ['write -P 0x11 0 1M']);
    const full = await takeBackup(opts(dir, disk));
    const truth = truthOf(disk, dir, 'full');
    const bitmaps = bitmapNames(disk);
    qemuIo(disk, ['write -P 0x22 4M 16M']);
    const r = await strata(path.join(dir, 'home'), ['backup', disk, '--repo', repoDir]);
    assert.equal(r.code, 2, r.err);
    assert.match(r.err, /\.partial-inc-2\.qcow2: the backup job failed: No space left on device/);
    assert.deepEqual(leftovers(repoDir), []);
    assert.deepEqual(bitmapNames(disk), bitmaps);
    const v = await strata(path.join(dir, 'home'), ['verify', '--repo', repoDir]);
    assert.equal(v.code, 0, v.err);
    const to = path.join(dir, 'full.raw');
    await restoreBackup({ repo: repoDir, id: full.id, to, format: 'raw', force: false });
    assert.ok(sameDisk(to, truth));
  } finally {
    spawnSyncOk('umount', [repoDir]);
  }
}, 60000);

function spawnSyncOk(cmd: string, args: string[]): boolean {
  return spawnSync(cmd, args, { stdio: 'ignore' }).status === 0;
}
