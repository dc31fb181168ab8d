// The backup channels through dispatch() of a real service: backup:take answers strata backup
// --json's object and pushes backup:progress while its job runs, backup:list the same rows as
// strata backups --json, backup:restore and backup:verify the CLI's shapes.
import { test, onTestFinished } from 'vitest';
import assert from 'node:assert/strict';
import path from 'node:path';
import { qemuImg, qemuIo } from '../helpers/qemu.ts';
import { createService } from '../../electron/core/service.ts';
import { dispatch } from '../../electron/core/dispatch.ts';
import type { ArgOf, BackupProgress, Channel, ResultOf } from '../../electron/core/contract.ts';
import { tmp, makeDisk, strata } from './helpers.ts';


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
  const call = async <C extends Channel>(channel: C, arg: ArgOf<C>): Promise<ResultOf<C>> => {
    const r = await dispatch(service, channel, arg);
    if (!r.ok) throw new Error(`${r.error.code}: ${r.error.message}`);
    return r.result as ResultOf<C>;
  };

  const plan = await call('backup:take', { image: disk, repo, dryRun: true });
  assert.equal(plan.dryRun, true);
  assert.equal(plan.level, 'full');
  assert.equal(plan.dirtyBytes, 1 << 20);
  const full = await call('backup:take', { image: disk, repo, level: 'full' });
  assert.deepEqual(Object.keys(full), ['id', 'level', 'requested', 'fallback', 'checkpoint', 'since', 'file', 'bytes', 'dirtyBytes', 'seconds']);
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
});
