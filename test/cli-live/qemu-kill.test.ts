// The VM's QEMU killed (SIGKILL) at each step of a live snapshot and of a live stream (a
// qemu-storage-daemon standing in for the VM), Strata going on as if nothing happened: the plan is
// left for the next run, saying QEMU went away; in the files QEMU left no checkpoint reads as a false
// clean, and qemu-img check finds no corruption. Then the VM is started again on the same socket: the next run
// knows it for another QEMU (the plan's mark in the old one is gone), runs nothing of the old plan in
// it, removes the overlay file only where it holds no data, and the operation can be taken afresh
// (after strata repair where the chain needs it), every checkpoint right.
import { test } from 'vitest';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { spawn, spawnSync } from 'node:child_process';
import { qemuInfoChain, waitListening } from '../helpers/qemu.ts';
import { rawCopy, differingBlocks, sinceOf, missedBytes } from '../helpers/truth.ts';
import { strata } from './helpers.ts';
import { liveChain, liveCore, flags, total, type LiveChain } from './live-chain.ts';
import { checkpointOrder } from '../../electron/core/checkpoints.ts';
import { withChain } from '../../electron/core/qcow2/chain.ts';

/** Every checkpoint of `top`'s chain is unknown, or ok and covering every block changed since its raw copy. */
function noFalseClean(c: LiveChain, top: string, truth: Record<string, string>): string[] {
  const now = rawCopy(top, path.join(c.dir, `now-${Date.now()}.raw`));
  const states: string[] = [];
  for (const name of withChain(top, (ch) => checkpointOrder(ch))) {
    const since = sinceOf(top, name);
    states.push(`${name}:${since.state}`);
    if (since.state !== 'ok' || !truth[name]) continue;
    const changed = differingBlocks(truth[name], now);
    assert.equal(missedBytes(changed, since.extents), 0, `${name} reads ok: it covers every block changed since it`);
  }
  fs.rmSync(now);
  // A QEMU killed while writing may leak clusters (qemu-img check exits 3: wasted space, no harm); corruption (2) fails.
  for (const f of withChain(top, (ch) => ch.layers.map((l) => l.path))) {
    const r = spawnSync('qemu-img', ['check', '-q', f], { encoding: 'utf8' });
    assert.ok(r.status === 0 || r.status === 3, `qemu-img check ${f}: exit ${r.status}: ${r.stdout}${r.stderr}`);
  }
  return states;
}

/** The VM started again on the same monitor socket, its disk `file` as node `node`. */
async function restart(t: { onTestFinished: (f: () => void) => void }, c: LiveChain, file: string, node: string) {
  const child = spawn('qemu-storage-daemon', ['--chardev', `socket,id=m,path=${c.daemon.socket},server=on,wait=off`, '--monitor', 'chardev=m', '--blockdev', `driver=qcow2,node-name=${node},file.driver=file,file.filename=${file}`], { stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  child.stderr!.on('data', (d) => (err += d));
  t.onTestFinished(() => {
    if (child.exitCode === null) child.kill('SIGKILL');
  });
  await waitListening(c.daemon.socket, child, () => err);
  return async () => {
    const gone = new Promise((r) => child.once('exit', r));
    child.kill('SIGTERM');
    await gone;
  };
}

const killAt = (c: LiveChain, args: string[], at: string, extra: Record<string, string> = {}) => liveCore(c, args, { QEMU_KILL_AT: at, QEMU_PID: String(c.daemon.child.pid), ...extra });

for (const at of ['after-step-0', 'after-step-1']) {
  test(`live snapshot, the VM's QEMU killed ${at}, before the switch-over: the disk is as it was; the restarted VM's next snapshot removes the empty overlay and takes it afresh`, { timeout: 120000 }, async (t) => {
    const c = await liveChain(t, { seed: true });
    const newTop = path.join(c.dir, 'new.qcow2');
    const r = killAt(c, ['snapshot', c.daemon.socket, 'disk', c.nbd, newTop], at);
    assert.equal(r.code, 0, r.err);
    assert.equal(r.out.state, 'running');
    assert.match(r.out.resolution, new RegExp(`^QEMU went away during .*${c.daemon.socket.replace(/[.]/g, '\\.')}.*; the next start finishes or undoes the plan$`));
    // The VM's disk is still mid.qcow2: its b2 was open read-write in the killed QEMU (in-use: unknown, never ok).
    assert.deepEqual(flags(c.mid), { b2: ['in-use', 'auto'] });
    assert.deepEqual(noFalseClean(c, c.mid, c.truth), ['b1:unknown', 'b2:unknown']);
    assert.ok(fs.existsSync(newTop), 'the overlay file the plan made is still there');

    const atC3 = rawCopy(c.mid, path.join(c.dir, 'at-c3.raw')); // the disk when the new snapshot is taken (nothing writes meanwhile)
    const stop = await restart(t, c, c.mid, 'disk');
    const again = await strata(c.home, 'snapshot', '--socket', c.daemon.socket, '--node', 'disk', newTop, '--checkpoint', 'c3', '--yes', '--json');
    assert.equal(again.code, 0, again.err);
    const out = JSON.parse(again.out);
    assert.match(out.recovered[0], /live snapshot plan #1 \(interrupted\): failed: the QEMU at .* is not the one plan #1 ran on \(its mark is gone: QEMU was restarted or replaced\).*removed new\.qcow2, which held no data/);
    assert.equal(out.outcome.state, 'done', out.outcome.resolution);
    await stop();
    // b2 was in-use after the kill: QEMU loads it inconsistent, so it is not carried, and b1, b2 stay
    // unknown (strata repair settles them); the new checkpoint c3 is ok, and right.
    assert.deepEqual(noFalseClean(c, newTop, { ...c.truth, c3: atC3 }), ['b1:unknown', 'b2:unknown', 'c3:ok']);
    assert.deepEqual(flags(newTop), { c3: ['auto'] });
    const h = JSON.parse((await strata(c.home, 'history', '--plans', '--json')).out);
    assert.deepEqual(h.map((p: any) => [p.kind, p.state]), [['snapshot-live', 'done'], ['snapshot-live', 'failed']]);
  });
}

for (const at of ['after-step-0', 'job-running']) {
test(`live stream, the VM's QEMU killed ${at === 'after-step-0' ? 'after the bitmaps were carried, before the job' : 'while the job runs'}: the restarted VM's next run does not go on without them`, { timeout: 120000 }, async (t) => {
  const c = await liveChain(t, { seed: true });
  const top = path.join(c.dir, 'top.qcow2');
  const snap = await strata(c.home, 'snapshot', '--socket', c.daemon.socket, '--node', 'disk', top, '--checkpoint', 'c3', '--yes');
  assert.equal(snap.code, 0, snap.err);
  const r = killAt(c, ['stream', c.daemon.socket, 'top', c.nbd], at, { SPEED: String(1 << 20) });
  assert.equal(r.code, 0, r.err);
  assert.equal(r.out.state, 'running');
  // QEMU stored nothing of the top (its bitmaps lived in memory only); mid was stored when the snapshot made it read-only.
  assert.deepEqual([flags(top), flags(c.mid), flags(c.base)], [{}, { b2: ['auto'] }, { b1: ['auto'] }]);
  assert.deepEqual(noFalseClean(c, top, c.truth), ['b1:unknown', 'b2:unknown']);
  // The user starts the VM again on the new top, same socket, same node name.
  const stop = await restart(t, c, top, 'top');
  const again = await strata(c.home, 'stream', '--socket', c.daemon.socket, '--node', 'top', '--yes', '--json');
  // Nothing of the old plan runs in this QEMU (its block-stream would drop the layers without the
  // carried bitmaps); a new stream is refused, since b1 and b2 cannot be trusted in this top.
  assert.equal(again.code, 2);
  assert.match(again.err, /checkpoint 'b1' cannot be trusted now .* Run strata repair .*top\.qcow2 first/);
  const h = JSON.parse((await strata(c.home, 'history', '--plans', '--json')).out);
  assert.deepEqual(h.map((p: any) => [p.kind, p.state]), [['stream-live', 'failed'], ['snapshot-live', 'done']]);
  assert.match(h[0].resolution, /^the QEMU at .* is not the one plan #2 ran on \(its mark is gone: QEMU was restarted or replaced\)/);
  assert.deepEqual(qemuInfoChain(top).map((l: any) => l.filename), [top, c.mid, c.base], 'nothing was streamed');
  const fix = await strata(c.home, 'repair', '--socket', c.daemon.socket, '--node', 'top', '--yes', '--json');
  assert.equal(fix.code, 0, fix.err);
  assert.deepEqual(JSON.parse(fix.out).after.map((v: any) => [v.name, v.state]), [['b1', 'ok'], ['b2', 'ok']]);
  const s2 = await strata(c.home, 'stream', '--socket', c.daemon.socket, '--node', 'top', '--yes', '--json');
  assert.equal(s2.code, 0, s2.err);
  assert.equal(JSON.parse(s2.out).outcome.state, 'done');
  await stop();
  assert.deepEqual(qemuInfoChain(top).map((l: any) => l.filename), [top]);
  assert.deepEqual(noFalseClean(c, top, c.truth), ['b1:ok', 'b2:ok']);
});
}

test("live snapshot, the VM's QEMU killed after the switch-over: the new top's checkpoints were never stored and read unknown; strata repair makes them right", { timeout: 120000 }, async (t) => {
  const c = await liveChain(t, { seed: true });
  const newTop = path.join(c.dir, 'new.qcow2');
  const r = killAt(c, ['snapshot', c.daemon.socket, 'disk', c.nbd, newTop], 'after-step-2');
  assert.equal(r.code, 0, r.err);
  assert.equal(r.out.state, 'done');
  // QEMU had made mid.qcow2 read-only (its bitmaps stored then); the new top's lived in memory only.
  assert.deepEqual([flags(newTop), flags(c.mid)], [{}, { b2: ['auto'] }]);
  assert.deepEqual(noFalseClean(c, newTop, c.truth), ['b1:unknown', 'b2:unknown']);
  const fix = await strata(c.home, 'repair', newTop, '--yes', '--json');
  assert.equal(fix.code, 0, fix.err);
  assert.deepEqual(noFalseClean(c, newTop, c.truth), ['b1:ok', 'b2:ok']);
});
