// A prune that merges incrementals, on real QEMU: the points a kept one is restored through are
// folded into it (qemu-img rebase of a copy swapped in), every remaining point restores exactly, the
// repository verifies (and still catches a flipped byte), the source's checkpoints are untouched; and
// the prune killed as each of its steps begins is finished or rolled back by the next start.
import { test } from 'vitest';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { qemuImg, qemuIo } from '../helpers/qemu.ts';
import { takeBackup } from '../../electron/core/backup/take.ts';
import { restoreBackup } from '../../electron/core/backup/restore.ts';
import { verifyRepository } from '../../electron/core/backup/verify.ts';
import { Repository } from '../../electron/core/backup/repository.ts';
import { PRUNE_STEPS, rollsForward } from '../../electron/core/backup/prune.ts';
import { openDb } from '../../electron/core/store/db.ts';
import { allocationExtents, withChain } from '../../electron/core/qcow2/chain.ts';
import { tmp, makeDisk, truthOf, sameDisk, bitmapNames, strata, fingerprint, tsScript, ROOT } from './helpers.ts';

const CHILD = path.join(ROOT, 'test/backup/prune-child.ts');

/**
 * full-1 ← inc-2 ← inc-3 ← inc-4, a raw copy of the disk at each. inc-2 writes 1M..1M+192k; inc-3
 * overwrites its first cluster only, so two clusters of inc-2 must end up in inc-3 when it is merged.
 */
async function fourIncs(dir: string) {
  const disk = makeDisk(dir, '16M');
  const repo = path.join(dir, 'repo');
  const truth: Record<string, string> = {};
  const writes = ['write -P 0x11 0 2M', 'write -P 0x22 1M 192k', 'write -P 0x33 1M 64k', 'write -P 0x44 4M 64k'];
  for (const w of writes) {
    qemuIo(disk, [w]);
    const b = await takeBackup({ image: disk, repo, level: null, since: null, compress: false, dryRun: false, dataDir: path.join(dir, 'home') });
    truth[b.id] = truthOf(disk, dir, b.id);
  }
  return { disk, repo, truth };
}

async function restoresExactly(repo: string, truth: Record<string, string>, dir: string): Promise<string[]> {
  const ids = Repository.open(repo).manifest.backups.map((b) => b.id);
  for (const id of ids) {
    const to = path.join(dir, `restored-${id}-${Date.now()}.raw`);
    await restoreBackup({ repo, id, to, format: 'raw', force: false });
    assert.ok(sameDisk(to, truth[id]), `${id} restores the disk as it was when it was backed up`);
    fs.rmSync(to);
  }
  return ids;
}

const backingOf = (file: string) => JSON.parse(qemuImg('info', '-U', '--output=json', file))['backing-filename'] ?? null;

test('keep-last 2 of full ← inc ← inc ← inc: the plan says inc-2 merges into inc-3; applied, inc-3 holds inc-2’s clusters it did not overwrite, builds on full-1, restores exactly and verifies', async () => {
  const dir = tmp();
  const home = path.join(dir, 'home');
  const { disk, repo, truth } = await fourIncs(dir);
  const checkpointsBefore = bitmapNames(disk);
  const before = fingerprint(repo);

  let r = await strata(home, ['prune', '--repo', repo, '--keep-last', '2', '--json']);
  assert.equal(r.code, 0, r.err);
  const plan = JSON.parse(r.out);
  assert.equal(plan.applied, false);
  assert.deepEqual(plan.keep.map((k: any) => [k.id, k.why]), [['full-1', ['needed to restore inc-3']], ['inc-3', ['keep-last']], ['inc-4', ['keep-last']]]);
  assert.deepEqual(plan.remove.map((x: any) => [x.id, x.mergedInto]), [['inc-2', 'inc-3']]);
  assert.deepEqual(plan.merge, [{ into: 'inc-3', from: ['inc-2'], parent: 'full-1', file: path.join(repo, 'inc-3.qcow2'), grownBytes: null }]);
  assert.deepEqual(plan.recovered, []);
  assert.deepEqual(fingerprint(repo), before, 'the plan writes nothing');
  r = await strata(home, ['prune', '--repo', repo, '--keep-last', '2']);
  assert.match(r.out, /merge   inc-2 into inc-3, which then builds on full-1/);

  r = await strata(home, ['prune', '--repo', repo, '--keep-last', '2', '--yes', '--json']);
  assert.equal(r.code, 0, r.err);
  const done = JSON.parse(r.out);
  assert.equal(done.applied, true);
  // inc-2 held 3 clusters, inc-3 overwrote one: two are folded in.
  assert.equal(done.merge[0].grownBytes > 0, true);
  assert.deepEqual(fs.readdirSync(repo).sort(), ['full-1.qcow2', 'inc-3.qcow2', 'inc-4.qcow2', 'strata-backups.json']);
  const inc3 = path.join(repo, 'inc-3.qcow2');
  assert.equal(backingOf(inc3), 'full-1.qcow2', 'inc-3 now builds on full-1, by a relative name');
  const own = withChain(inc3, (c) => {
    const l = allocationExtents(c.layers[0]);
    return Array.from({ length: l.count }, (_, i) => [l.starts[i], l.ends[i]]);
  });
  assert.deepEqual(own, [[1 << 20, (1 << 20) + (192 << 10)]], 'inc-3 holds its own cluster and the two of inc-2 it did not overwrite');
  assert.ok(sameDisk(inc3, truth['inc-3']), 'the merged file itself reads as inc-3 did');
  const m = Repository.open(repo).manifest.backups.find((b) => b.id === 'inc-3')!;
  assert.deepEqual([m.parent, m.since, m.bytes], ['full-1', Repository.open(repo).find('full-1').checkpoint, fs.statSync(inc3).size]);
  assert.equal(m.dirtyBytes, 192 << 10);
  assert.deepEqual(await restoresExactly(repo, truth, dir), ['full-1', 'inc-3', 'inc-4']);
  assert.deepEqual(bitmapNames(disk), checkpointsBefore, 'the source’s checkpoints are unchanged');
  assert.equal((await strata(home, ['verify', '--repo', repo])).code, 0);
  // The catalog follows the manifest.
  const db = openDb(path.join(home, 'strata.db'));
  const rows = db.prepare('SELECT id, parent, bytes FROM backup_catalog WHERE repo = ? ORDER BY id').all(repo) as any[];
  const activity = db.prepare("SELECT state, step, summary FROM backup_activity WHERE action = 'prune'").all() as any[];
  db.close();
  assert.deepEqual(rows.map((x) => [x.id, x.parent, x.bytes]), [['full-1', null, Repository.open(repo).find('full-1').bytes], ['inc-3', 'full-1', m.bytes], ['inc-4', 'inc-3', Repository.open(repo).find('inc-4').bytes]]);
  assert.deepEqual(activity, [{ state: 'ok', step: 'deleting', summary: 'prune: remove inc-2, merge inc-2 into inc-3, keep 3' }]);
  // The merged point's digests cover the folded-in data: a flipped byte in it is caught.
  const run = m.digests.runs.find((x) => x.start <= (1 << 20) + (64 << 10) && x.start + x.length > (1 << 20) + (64 << 10))!;
  const fd = fs.openSync(inc3, 'r+');
  const at = run.offset! + (1 << 20) + (64 << 10) - run.start + 5;
  const byte = Buffer.alloc(1);
  fs.readSync(fd, byte, 0, 1, at);
  fs.writeSync(fd, Buffer.from([byte[0] ^ 0xff]), 0, 1, at);
  fs.closeSync(fd);
  const v = await verifyRepository(Repository.open(repo));
  assert.deepEqual(v.map((x) => [x.id, x.ok]), [['full-1', true], ['inc-3', false], ['inc-4', true]]);
  assert.match(v[1].problems.join(), /sha256 mismatch/);
}, 120_000);

test('keep-last 1: inc-3 and inc-2 fold into inc-4 in one rebase onto full-1', async () => {
  const dir = tmp();
  const home = path.join(dir, 'home');
  const { repo, truth } = await fourIncs(dir);
  const r = await strata(home, ['prune', '--repo', repo, '--keep-last', '1', '--yes', '--json']);
  assert.equal(r.code, 0, r.err);
  assert.deepEqual(JSON.parse(r.out).merge.map((m: any) => [m.into, m.from, m.parent]), [['inc-4', ['inc-3', 'inc-2'], 'full-1']]);
  assert.equal(backingOf(path.join(repo, 'inc-4.qcow2')), 'full-1.qcow2');
  assert.deepEqual(await restoresExactly(repo, truth, dir), ['full-1', 'inc-4']);
  assert.equal((await strata(home, ['verify', '--repo', repo])).code, 0);
}, 120_000);

test('the prune killed as each step begins: the next strata backups (or prune) rolls it back before the swap and finishes it from the swap on; every point restores, nothing half-merged is listed', async () => {
  const dir = tmp();
  const made = await fourIncs(dir);
  for (const step of PRUNE_STEPS) {
    const at = path.join(dir, step);
    const repo = path.join(at, 'repo');
    const home = path.join(at, 'home');
    fs.mkdirSync(home, { recursive: true });
    fs.cpSync(made.repo, repo, { recursive: true });
    const killed = await tsScript(CHILD, home, [repo, '2'], { CRASH_AT: step });
    assert.equal(killed.code, null, `killed as ${step} began: ${killed.err}`);
    // The journal says where it stopped; the lock of the dead process is still there.
    const db = openDb(path.join(home, 'strata.db'));
    assert.deepEqual(db.prepare("SELECT state, step FROM backup_activity WHERE action = 'prune'").all(), [{ state: 'running', step }]);
    db.close();
    assert.ok(fs.existsSync(path.join(repo, 'strata-backups.lock')));
    // The next look at the repository recovers it (the first two by strata prune's plan, the rest by strata backups).
    const next = PRUNE_STEPS.indexOf(step) < 2 ? await strata(home, ['prune', '--repo', repo, '--keep-last', '4', '--json']) : await strata(home, ['backups', '--repo', repo, '--json']);
    assert.equal(next.code, 0, next.err);
    const forward = rollsForward(step);
    assert.match(next.err, forward ? /interrupted while .*: finished, removed inc-2 \(merged inc-2 into inc-3\)/ : /rolled back, nothing was removed/);
    const listed = forward ? ['full-1', 'inc-3', 'inc-4'] : ['full-1', 'inc-2', 'inc-3', 'inc-4'];
    const files = fs.readdirSync(repo).sort();
    assert.deepEqual(files, [...listed.map((id) => `${id}.qcow2`), 'strata-backups.json'], `after a crash at ${step}: no merge copy, no lock, no half-removed file`);
    assert.equal(backingOf(path.join(repo, 'inc-3.qcow2')), forward ? 'full-1.qcow2' : 'inc-2.qcow2');
    assert.deepEqual(await restoresExactly(repo, made.truth, at), listed);
    const v = await verifyRepository(Repository.open(repo));
    assert.deepEqual(v.filter((x) => !x.ok), [], `everything listed verifies after a crash at ${step}`);
    const after = openDb(path.join(home, 'strata.db'));
    const row = after.prepare("SELECT state, note FROM backup_activity WHERE action = 'prune'").get() as any;
    const catalog = (after.prepare('SELECT id FROM backup_catalog WHERE repo = ? ORDER BY id').all(repo) as any[]).map((x) => x.id);
    after.close();
    assert.equal(row.state, forward ? 'ok' : 'failed');
    assert.deepEqual(catalog, listed);
    // And a prune again does what was asked.
    const again = await strata(home, ['prune', '--repo', repo, '--keep-last', '2', '--yes', '--json']);
    assert.equal(again.code, 0, again.err);
    assert.deepEqual(JSON.parse(again.out).remove.map((x: any) => x.id), forward ? [] : ['inc-2']);
    assert.deepEqual(Repository.open(repo).manifest.backups.map((b) => b.id), ['full-1', 'inc-3', 'inc-4']);
  }
}, 600_000);
