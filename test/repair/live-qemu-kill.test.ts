// The VM's QEMU killed (SIGKILL) at each step of a live repair (a qemu-storage-daemon holding the
// untracked overlay as node disk0, as in live.test.ts): Strata reports the failure naming the socket;
// whatever the QEMU had not stored is gone with it, nothing reads as a false clean; the journal's plan
// is closed as failed, by the same run or the app's next start; no scratch is left; and once the VM
// runs again, the next strata repair --socket --yes repairs the chain.
import fs from 'node:fs';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { test, expect, vi, type TestContext } from 'vitest';
import { createService } from '../../electron/core/service.ts';
import { dispatch } from '../../electron/core/dispatch.ts';
import { startDaemon, type Daemon } from '../helpers/storage-daemon.ts';
import { qemuInfoChain } from '../helpers/qemu.ts';
import { G, untrackedOverlay, strata, strataAsync, assertTruth, qemuCheckAll, type Scenario } from './scenarios.ts';

vi.setConfig({ testTimeout: 180_000 });

async function held(t: TestContext, s: Scenario): Promise<Daemon> {
  return startDaemon(t, s.dir, ['--blockdev', `driver=qcow2,node-name=disk0,file.driver=file,file.filename=${s.top}`]);
}

const untracked = () => untrackedOverlay(256 * G);

const home = (s: Scenario) => path.join(s.dir, 'home');
const leftScratch = (s: Scenario) => (fs.existsSync(path.join(home(s), 'run')) ? fs.readdirSync(path.join(home(s), 'run')).filter((f) => f.startsWith('repair-')) : []);

for (const at of ['after-step-0', 'after-step-1', 'running-step-2']) {
  test(`the VM's QEMU killed at ${at} of a live repair: a clear failure, no false clean, and the next repair heals the chain`, async (t) => {
    const s = untracked();
    const vm = await held(t, s);
    const k = spawnSync(process.execPath, ['--import', 'tsx', path.join(import.meta.dirname, 'live-child.ts'), vm.socket, 'disk0'], {
      encoding: 'utf8',
      env: { ...process.env, STRATA_HOME: home(s), QEMU_KILL_AT: at, QEMU_PID: String(vm.child.pid) },
    });
    expect(k.status, k.stderr).toBe(0);
    const report = JSON.parse(k.stdout.trim().split('\n').pop()!);
    expect(report.outcomes.map((o: any) => o.state)).toEqual(['failed']);
    // the failure names the socket, and what the QEMU's death leaves
    expect(report.outcomes[0].resolution).toContain(vm.socket);
    expect(report.outcomes[0].resolution).toContain("bitmap 'c1' died with it (QEMU had not stored it)");
    // QEMU had stored nothing: the file has no bitmap, and reads as before the repair
    expect(qemuInfoChain(s.top)[0]['format-specific'].data.bitmaps).toBeUndefined();
    const look = strata(s.dir, ['repair', s.top, '--json']);
    expect(look.code, look.stderr).toBe(0);
    expect(look.json.findings.map((f: any) => f.code)).toEqual(['untracked-overlay']);
    expect(look.json.before.map((v: any) => [v.name, v.state])).toEqual([['c1', 'unknown']]);
    assertTruth(s);
    expect(leftScratch(s)).toEqual([]);
    // the journal says so, and the app's start leaves it so (nothing to resume on a QEMU that is gone)
    const service = createService({ dataDir: home(s), mode: 'browser' });
    const r = await dispatch(service, 'history:plans', {});
    service.close();
    if (!r.ok) throw new Error(r.error.message);
    expect((r.result as any[]).map((p) => [p.kind, p.state])).toEqual([['repair-live', 'failed']]);
    // the VM runs again: the next repair --socket --yes repairs the chain
    const vm2 = await held(t, s);
    const fixed = await strataAsync(s.dir, ['repair', '--socket', vm2.socket, '--node', 'disk0', '--yes', '--json']);
    expect(fixed.code, fixed.stderr).toBe(0);
    expect(fixed.json.recovered).toEqual([]);
    expect(fixed.json.outcomes.map((o: any) => o.state)).toEqual(['done']);
    const gone = new Promise((res) => vm2.child.once('exit', res));
    vm2.child.kill('SIGTERM');
    await gone;
    expect(assertTruth(s).map((x) => [x.name, x.state, x.missed])).toEqual([['c1', 'ok', 0]]);
    qemuCheckAll(s);
  });
}
