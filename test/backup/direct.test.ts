// An offline full or copy (rules.ts copyPath 'direct'): the target written
// past the page cache, and the digests ("guest" scheme) hashed from the source chain while QEMU
// copies. Real QEMU on real chains: the point restores exactly, verify checks the copy against the
// disk it came from (a flipped byte, and a data cluster turned into zeros, are named), the backup
// file is not left in the page cache, a compressed source and a filesystem without O_DIRECT (ramfs) both
// still give a good backup. And a copy opens its image read-only: it writes nothing to it.
import { test, onTestFinished } from 'vitest';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { qemuImg, qemuIo, type Cleanup } from '../helpers/qemu.ts';
import { startDaemon } from '../helpers/storage-daemon.ts';
import { takeBackup } from '../../electron/core/backup/take.ts';
import { Repository } from '../../electron/core/backup/repository.ts';
import { mapAlone } from '../../electron/core/backup/tools.ts';
import { imageLockState } from '../../electron/core/daemon/image-lock.ts';
import { tmp, makeDisk, truthOf, sameDisk, strata, flipByteAt, opts } from './helpers.ts';

const MiB = 1 << 20;

/** Bytes of `file` in the page cache (util-linux fincore). */
function residentBytes(file: string): number {
  const r = spawnSync('fincore', ['--bytes', '--noheadings', '--output', 'RES', file], { encoding: 'utf8' });
  assert.equal(r.status, 0, `fincore: ${r.stderr}`);
  return Number(r.stdout.trim());
}

/** Data bytes of a chain as QEMU maps it (what a full copies as data). */
function dataBytes(image: string): number {
  const map = JSON.parse(qemuImg('map', '--output=json', image)) as { length: number; data: boolean; zero: boolean }[];
  return map.filter((e) => e.data && !e.zero).reduce((n, e) => n + e.length, 0);
}

/** Host offset in a backup file (alone) of disk byte `at`. */
async function hostOffset(file: string, at: number): Promise<number> {
  const e = (await mapAlone(file)).find((x) => x.start <= at && at < x.start + x.length && x.data && x.offset !== undefined);
  assert.ok(e, `disk byte ${at} is data in ${file}`);
  return e.offset! + (at - e.start);
}

/** A base with data and an overlay made outside Strata that writes over it and zeroes a part. */
function chain(dir: string): string {
  const base = path.join(dir, 'base.qcow2');
  qemuImg('create', '-q', '-f', 'qcow2', base, '256M');
  qemuIo(base, ['write -P 0x41 0 40M', 'write -P 0x42 100M 50M']);
  const top = path.join(dir, 'disk.qcow2');
  qemuImg('create', '-q', '-f', 'qcow2', '-b', base, '-F', 'qcow2', top);
  qemuIo(top, ['write -P 0x51 10M 3M', 'write -z 20M 2M', 'write -P 0x52 200M 1M']);
  return top;
}

test('past the page cache, digested from the source chain while QEMU copies: restores exactly, verify checks it end to end', async () => {
  const dir = tmp();
  const disk = chain(dir);
  const home = path.join(dir, 'home');
  const repo = path.join(dir, 'repo');
  const full = await takeBackup(opts(dir, disk, { level: 'full' }));
  const truth = truthOf(disk, dir, 'full');
  const m = Repository.open(repo).find(full.id);
  assert.equal(m.digests.scheme, 'guest');
  assert.equal(JSON.parse(fs.readFileSync(path.join(repo, 'strata-backups.json'), 'utf8')).version, 2);
  // every run of the chain's data, in pieces of at most 32 MiB, none of them with a host offset
  assert.equal(m.digests.runs.reduce((n, x) => n + x.length, 0), dataBytes(disk));
  assert.ok(m.digests.runs.length >= 4 && m.digests.runs.every((x) => x.offset === undefined && x.length <= 32 * MiB), JSON.stringify(m.digests.runs.map((x) => [x.start, x.length])));
  // written past the page cache: almost none of the file is cached afterwards
  const size = fs.statSync(full.file).size;
  assert.ok(residentBytes(full.file) < size / 10, `${residentBytes(full.file)} of ${size} bytes cached`);
  const out = path.join(dir, 'restored.qcow2');
  assert.equal((await strata(home, ['restore', '--repo', repo, full.id, '--to', out])).code, 0);
  assert.ok(sameDisk(out, truth), 'the restore equals the disk at backup time');
  let r = await strata(home, ['verify', '--repo', repo, '--json']);
  assert.equal(r.code, 0, r.out + r.err);
  assert.equal(JSON.parse(r.out)[0].checkedBytes, dataBytes(disk));

  // A flipped byte in the data the overlay wrote (10 MiB + 5) is named by its run.
  const runOf = (at: number) => m.digests.runs.find((x) => x.start <= at && at < x.start + x.length)!;
  const flipped = 10 * MiB + 5;
  flipByteAt(full.file, await hostOffset(full.file, flipped));
  r = await strata(home, ['verify', '--repo', repo, '--json']);
  assert.equal(r.code, 2);
  const a = runOf(flipped);
  assert.deepEqual(JSON.parse(r.out)[0].problems, [`${full.file}: the data of disk bytes ${a.start}..${a.start + a.length} differs from what was written (sha256 mismatch)`]);
  flipByteAt(full.file, await hostOffset(full.file, flipped));
  assert.equal((await strata(home, ['verify', '--repo', repo])).code, 0, 'flipped back');

  // Data the backup lost outright (a cluster of the base's data turned into zeros in the file) reads
  // as zeros where the disk had data: the digest of the disk's bytes catches it.
  const lost = 120 * MiB;
  qemuIo(full.file, [`write -z ${lost} 64k`]);
  r = await strata(home, ['verify', '--repo', repo, '--json']);
  assert.equal(r.code, 2);
  const b = runOf(lost);
  assert.deepEqual(JSON.parse(r.out)[0].problems, [`${full.file}: the data of disk bytes ${b.start}..${b.start + b.length} differs from what was written (sha256 mismatch)`]);
}, 120_000);

test('a compressed full of the same disk: through the page cache, digests of the file itself', async () => {
  const dir = tmp();
  const disk = chain(dir);
  const full = await takeBackup(opts(dir, disk, { level: 'full', compress: true }));
  const m = Repository.open(path.join(dir, 'repo')).find(full.id);
  assert.equal(m.digests.scheme, undefined);
  assert.ok(m.digests.runs.every((x) => typeof x.offset === 'number'));
  assert.ok(residentBytes(full.file) > fs.statSync(full.file).size / 2, 'written through the page cache');
  assert.equal((await strata(path.join(dir, 'home'), ['verify', '--repo', path.join(dir, 'repo')])).code, 0);
}, 120_000);

test('a compressed source cannot be read raw: the backup digests its own file instead, and restores exactly', async () => {
  const dir = tmp();
  const plain = makeDisk(dir, '128M');
  qemuIo(plain, ['write -P 0x61 0 8M', 'write -P 0x62 64M 4M']);
  const disk = path.join(dir, 'compressed.qcow2');
  qemuImg('convert', '-c', '-O', 'qcow2', plain, disk);
  const full = await takeBackup(opts(dir, disk, { level: 'full' }));
  const truth = truthOf(disk, dir, 'full');
  const m = Repository.open(path.join(dir, 'repo')).find(full.id);
  assert.equal(m.digests.scheme, undefined);
  assert.equal(m.digests.runs.reduce((n, x) => n + x.length, 0), 12 * MiB);
  const home = path.join(dir, 'home');
  assert.equal((await strata(home, ['verify', '--repo', path.join(dir, 'repo')])).code, 0);
  const out = path.join(dir, 'restored.qcow2');
  assert.equal((await strata(home, ['restore', '--repo', path.join(dir, 'repo'), full.id, '--to', out])).code, 0);
  assert.ok(sameDisk(out, truth));
}, 120_000);

test('a repository on a filesystem without O_DIRECT (ramfs): through the page cache, saying so, still digested from the source', async () => {
  const dir = tmp();
  const disk = chain(dir);
  const repo = path.join(dir, 'repo');
  fs.mkdirSync(repo);
  // ramfs refuses O_DIRECT opens (tmpfs takes them since Linux 6.6). Mounting needs root, as CI
  // runs; a test that cannot set up its filesystem fails, it never skips.
  assert.equal(spawnSync('mount', ['-t', 'ramfs', 'ramfs', repo]).status, 0, 'mount a ramfs (needs root)');
  try {
    const full = await takeBackup(opts(dir, disk, { level: 'full' }));
    assert.ok(full.notes.some((x) => x.startsWith(`${repo}: its filesystem takes no O_DIRECT writes`)), full.notes.join('\n'));
    const truth = truthOf(disk, dir, 'full');
    assert.equal(Repository.open(repo).find(full.id).digests.scheme, 'guest');
    const home = path.join(dir, 'home');
    assert.equal((await strata(home, ['verify', '--repo', repo])).code, 0);
    const out = path.join(dir, 'restored.qcow2');
    assert.equal((await strata(home, ['restore', '--repo', repo, full.id, '--to', out])).code, 0);
    assert.ok(sameDisk(out, truth));
  } finally {
    spawnSync('umount', [repo]);
  }
}, 120_000);

test('manifest versions: 1 while every digest is a host one (older Strata read it), 2 once a guest one is written; guest digests in a version-1 manifest, or a run without its sha256, is damaged and nothing is written', async () => {
  const dir = tmp();
  const disk = makeDisk(dir);
  qemuIo(disk, ['write -P 0x11 0 2M']);
  const home = path.join(dir, 'home');
  const repo = path.join(dir, 'repo');
  const manifest = path.join(repo, 'strata-backups.json');
  const version = () => JSON.parse(fs.readFileSync(manifest, 'utf8')).version;
  await takeBackup(opts(dir, disk, { level: 'full', compress: true }));
  assert.equal(version(), 1, 'host digests only');
  qemuIo(disk, ['write -P 0x22 1M 64k']);
  await takeBackup(opts(dir, disk));
  assert.equal(version(), 1, 'an incremental: host digests');
  let r = await strata(home, ['verify', '--repo', repo]);
  assert.equal(r.code, 0, r.out + r.err);
  const hostOnly = JSON.parse(fs.readFileSync(manifest, 'utf8'));
  await takeBackup(opts(dir, disk, { level: 'copy' }));
  assert.equal(version(), 2, 'a guest digest written');
  assert.equal((await strata(home, ['verify', '--repo', repo])).code, 0);

  const damaged = async (m: unknown, why: RegExp) => {
    fs.writeFileSync(manifest, JSON.stringify(m));
    const before = fs.readFileSync(manifest);
    const res = await strata(home, ['backup', disk, '--repo', repo]);
    assert.equal(res.code, 2, res.err);
    assert.match(res.err, why);
    assert.deepEqual(fs.readFileSync(manifest), before, 'nothing was written');
  };
  const guest = structuredClone(hostOnly);
  guest.backups[0].digests.scheme = 'guest';
  await damaged(guest, /damaged backup manifest: backup full-1 has digests of scheme "guest"/);
  const noSha = structuredClone(hostOnly);
  delete noSha.backups[1].digests.runs[0].sha256;
  await damaged(noSha, /damaged backup manifest: backup inc-2 has a digest that is not \{start, length, offset, sha256\}/);
  const future = structuredClone(hostOnly);
  future.version = 3;
  fs.writeFileSync(manifest, JSON.stringify(future));
  r = await strata(home, ['backups', '--repo', repo]);
  assert.equal(r.code, 2);
  assert.match(r.err, /manifest version 3 is from a newer Strata \(this one reads 2\)/);
}, 120_000);

test('a copy opens the image read-only: the image is byte for byte as it was, bitmaps and all; a disk a VM writes is still refused', async () => {
  const dir = tmp();
  const disk = makeDisk(dir);
  qemuIo(disk, ['write -P 0x11 0 4M']);
  qemuImg('bitmap', '--add', disk, 'theirs');
  qemuIo(disk, ['write -P 0x12 8M 1M']);
  const before = fs.readFileSync(disk);
  for (const compress of [false, true]) {
    const copy = await takeBackup(opts(dir, disk, { level: 'copy', compress }));
    assert.equal(copy.checkpoint, null);
    assert.ok(fs.readFileSync(disk).equals(before), `the image is unchanged (${compress ? 'compressed, through the page cache' : 'direct'})`);
  }
  // a writer (a storage daemon, as a VM would) holds the image: it holds the lock by the time its
  // monitor listens
  const vm = await startDaemon({ onTestFinished } as Cleanup, dir, ['--blockdev', `driver=qcow2,node-name=vm,file.driver=file,file.filename=${disk}`]);
  assert.equal(await imageLockState(disk), 'locked', 'the holder holds the image');
  await assert.rejects(takeBackup(opts(dir, disk, { level: 'copy' })), (e: any) => e.code === 'E_BAD_INPUT' && /in use by another QEMU/.test(e.message));
  vm.child.kill('SIGKILL');
}, 120_000);
