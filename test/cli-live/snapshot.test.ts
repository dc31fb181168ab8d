// strata snapshot --socket PATH --node NODE NEW_TOP on a running disk (a qemu-storage-daemon standing
// in for the VM): the plan changes nothing; --yes switches the disk over to the new overlay with its
// checkpoint bitmaps in the same transaction; afterwards every checkpoint Strata calls ok covers every
// block that differs between its raw copy and the disk now (and no more), qemu-img check passes, and
// writes after are tracked. A writer that writes through the switch-over loses nothing, and a Strata
// killed mid-plan is rolled back or finished by the next run.
import { test } from 'vitest';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { qemuMap } from '../helpers/qemu.ts';
import { sinceOf } from '../helpers/truth.ts';
import { strata } from './helpers.ts';
import { liveChain, guestWrites, liveRawCopy, assertTruth, flags, total, graph, liveCore, appStart, type LiveChain } from './live-chain.ts';

test('strata snapshot --socket: the plan changes nothing; --yes takes it in one transaction and every checkpoint stays ok', { timeout: 120000 }, async (t) => {
  const c = await liveChain(t);
  const newTop = path.join(c.dir, 'top.qcow2');
  await guestWrites(c, 'disk', ['write -P 0x51 6M 256k']);
  const before = await graph(c.daemon.socket);

  const dry = await strata(c.home, 'snapshot', '--socket', c.daemon.socket, '--node', 'disk', newTop, '--checkpoint', 'c3', '--json');
  assert.equal(dry.code, 0, dry.err);
  const plan = JSON.parse(dry.out);
  assert.equal(plan.applied, false);
  assert.equal(plan.newNode, 'top');
  assert.equal(plan.activeNode, 'disk');
  assert.deepEqual(plan.bitmaps.map((b: any) => `${b.name}:${b.granularity}`).sort(), ['b1:65536', 'b2:65536', 'c3:65536']);
  assert.deepEqual(plan.plan.map((s: any) => s.qmp.map((q: any) => q.execute)), [[], ['blockdev-add'], ['transaction']]);
  assert.deepEqual(plan.plan[0].commands[0].slice(0, 8), ['qemu-img', 'create', '-q', '-f', 'qcow2', '-b', c.mid, '-F']);
  const tx = plan.plan[2].qmp[0].arguments.actions;
  assert.deepEqual(tx[0], { type: 'blockdev-snapshot', data: { node: 'disk', overlay: 'top' } });
  assert.deepEqual(tx.slice(1).map((a: any) => [a.type, a.data.node, a.data.name, a.data.persistent]).sort(), [['block-dirty-bitmap-add', 'top', 'b1', true], ['block-dirty-bitmap-add', 'top', 'b2', true], ['block-dirty-bitmap-add', 'top', 'c3', true]]);
  assert.deepEqual(plan.before.map((v: any) => [v.name, v.state]), [['b1', 'ok'], ['b2', 'ok']]);
  assert.deepEqual(plan.after.map((v: any) => [v.name, v.state]), [['b1', 'ok'], ['b2', 'ok'], ['c3', 'ok']]);
  assert.deepEqual(plan.after.map((v: any) => v.drawing).slice(0, 2), plan.before.map((v: any) => v.drawing), 'a snapshot adds no mark');
  assert.equal(fs.existsSync(newTop), false, 'the plan created no file');
  assert.deepEqual(await graph(c.daemon.socket), before, 'the plan changed nothing in QEMU');
  const text = await strata(c.home, 'snapshot', '--socket', c.daemon.socket, '--node', 'disk', newTop, '--checkpoint', 'c3');
  assert.equal(text.code, 0, text.err);
  assert.match(text.out, /qmp \{"execute":"transaction"/);
  assert.match(text.out, /Nothing was changed\. Run again with --yes to apply\./);

  const truth = { ...c.truth, c3: await liveRawCopy(c, 'disk', path.join(c.dir, 'at-c3.raw')) };
  const r = await strata(c.home, 'snapshot', '--socket', c.daemon.socket, '--node', 'disk', newTop, '--checkpoint', 'c3', '--yes', '--json');
  assert.equal(r.code, 0, r.err);
  const done = JSON.parse(r.out);
  assert.equal(done.applied, true);
  assert.equal(done.outcome.state, 'done');
  assert.equal(done.active, newTop);
  assert.equal(done.activeNode, 'top');
  const after = await graph(c.daemon.socket);
  assert.ok(after.backing.includes('top->disk'), after.backing.join(', '));
  assert.equal(after.files.top, newTop, 'QEMU names the overlay by its plain file name');
  assert.deepEqual(after.bitmaps.top, ['b1:rec', 'b2:rec', 'c3:rec']);
  assert.deepEqual(after.bitmaps.disk, ['b1:rec', 'b2:rec'], "the old top's bitmaps are left as they were");
  // The old top was reopened read-only and QEMU stored its bitmaps then: not in-use on disk.
  assert.deepEqual(flags(c.mid), { b1: ['auto'], b2: ['auto'] });
  // The journal has it.
  const h = await strata(c.home, 'history', '--plans', '--json');
  const plans = JSON.parse(h.out);
  assert.deepEqual(plans.map((p: any) => [p.kind, p.state]), [['snapshot-live', 'done']]);

  // Writes after the snapshot land in the new top and are tracked there.
  await guestWrites(c, 'top', ['write -P 0x61 8M 512k', 'write -P 0x62 0 64k']);
  await c.stop();
  assert.deepEqual(flags(newTop), { b1: ['auto'], b2: ['auto'], c3: ['auto'] });
  assert.deepEqual(Object.keys(flags(newTop)), ['b1', 'b2', 'c3'], 'stored in creation order');
  assertTruth(c, newTop, truth);
  assert.equal(total(sinceOf(newTop, 'c3').extents), 576 * 1024, 'since c3: just the two writes after it');
});

test('strata snapshot --socket: bad input exits 2 with one line naming what is wrong, and changes nothing', { timeout: 60000 }, async (t) => {
  const c = await liveChain(t);
  const newTop = path.join(c.dir, 'top.qcow2');
  const s = c.daemon.socket;
  const noNode = await strata(c.home, 'snapshot', '--socket', s, '--node', 'nope', newTop, '--yes');
  assert.equal(noNode.code, 2);
  assert.match(noNode.err, /no block node named 'nope' \(named nodes: disk/);
  const backing = (await graph(s)).backing[0].split('->')[1];
  const notTop = await strata(c.home, 'snapshot', '--socket', s, '--node', backing, newTop, '--yes');
  assert.equal(notTop.code, 2);
  assert.match(notTop.err, /read-only|is the backing of node 'disk'/);
  fs.writeFileSync(path.join(c.dir, 'there.qcow2'), 'x');
  const exists = await strata(c.home, 'snapshot', '--socket', s, '--node', 'disk', path.join(c.dir, 'there.qcow2'), '--yes');
  assert.equal(exists.code, 2);
  assert.match(exists.err, /there\.qcow2: already exists/);
  const dup = await strata(c.home, 'snapshot', '--socket', s, '--node', 'disk', newTop, '--checkpoint', 'b1', '--yes');
  assert.equal(dup.code, 2);
  assert.match(dup.err, /--checkpoint b1: the chain already has a bitmap of that name/);
  const clash = await strata(c.home, 'snapshot', '--socket', s, '--node', 'disk', newTop, '--new-node', 'disk', '--yes');
  assert.equal(clash.code, 2);
  assert.match(clash.err, /a node named 'disk' already exists/);
  const noSocket = await strata(c.home, 'snapshot', '--node', 'disk', newTop);
  assert.equal(noSocket.code, 2);
  assert.match(noSocket.err, /--node and --new-node need --socket PATH/);
  assert.equal(fs.existsSync(newTop), false);
  assert.deepEqual((await graph(s)).bitmaps.disk, ['b1:rec', 'b2:rec']);
});

const core = (c: LiveChain, newTop: string, env: Record<string, string>) => liveCore(c, ['snapshot', c.daemon.socket, 'disk', c.nbd, newTop], env);

test('a guest writing through the switch-over: every write is in a layer whose bitmaps hold it', { timeout: 120000 }, async (t) => {
  const c = await liveChain(t);
  const newTop = path.join(c.dir, 'top.qcow2');
  const midBefore = qemuMap(c.mid).filter((e) => e.depth === 0 && e.data);
  const r = core(c, newTop, { WRITE_DURING: '3000' });
  assert.equal(r.code, 0, r.err);
  assert.equal(r.out.state, 'done', r.out.resolution);
  assert.equal(r.out.writerCode, 0, 'the writer wrote everything');
  await c.stop();
  // Both layers took some of the writer's writes: it wrote before and after the switch-over.
  const topAlloc = qemuMap(newTop).filter((e) => e.depth === 0 && e.data);
  assert.ok(total(topAlloc) > 0, 'the new top took writes');
  assert.ok(total(qemuMap(c.mid).filter((e) => e.depth === 0 && e.data)) > total(midBefore), 'the old top took writes');
  assertTruth(c, newTop, c.truth);
  // c3 marks exactly what the new top holds: every write after the switch-over, nothing before.
  assert.deepEqual(sinceOf(newTop, 'c3').extents, topAlloc.map((e) => ({ start: e.start, length: e.length })));
});

test('Strata killed with the overlay open, before the switch-over: the next run rolls it back and takes the snapshot', { timeout: 120000 }, async (t) => {
  const c = await liveChain(t);
  const newTop = path.join(c.dir, 'top.qcow2');
  const r = core(c, newTop, { CRASH_AT: 'after-step-1' });
  assert.equal(r.signal, 'SIGKILL', r.err);
  const left = await graph(c.daemon.socket);
  assert.ok('top' in left.bitmaps && fs.existsSync(newTop), 'the overlay was open and not attached');
  assert.deepEqual(left.backing.filter((e: string) => e.startsWith('top->')), []);
  // Without --yes the interrupted plan is named, and nothing is done.
  const look = await strata(c.home, 'snapshot', '--socket', c.daemon.socket, '--node', 'disk', path.join(c.dir, 'other.qcow2'), '--json');
  assert.equal(look.code, 0, look.err);
  assert.match(JSON.parse(look.out).recovered[0], /live snapshot plan #1 was interrupted/);
  const again = await strata(c.home, 'snapshot', '--socket', c.daemon.socket, '--node', 'disk', newTop, '--checkpoint', 'c3', '--yes', '--json');
  assert.equal(again.code, 0, again.err);
  const out = JSON.parse(again.out);
  assert.match(out.recovered[0], /plan #1 \(interrupted\): rolled-back: .*undid open top\.qcow2 .*create top\.qcow2/);
  assert.equal(out.outcome.state, 'done');
  const truth = { ...c.truth };
  await guestWrites(c, 'top', ['write -P 0x71 10M 128k']);
  await c.stop();
  assertTruth(c, newTop, truth);
  const h = JSON.parse((await strata(c.home, 'history', '--plans', '--json')).out);
  assert.deepEqual(h.map((p: any) => p.state).sort(), ['done', 'rolled-back']);
});

test('Strata killed after the transaction was sent, before the journal said so: QEMU is asked and the plan is finished', { timeout: 120000 }, async (t) => {
  const c = await liveChain(t);
  const newTop = path.join(c.dir, 'top.qcow2');
  const r = core(c, newTop, { CRASH_AT: 'after-step-2' });
  assert.equal(r.signal, 'SIGKILL', r.err);
  const { default: Database } = await import('better-sqlite3');
  const db = new Database(path.join(c.home, 'strata.db'));
  db.prepare("UPDATE plan_steps SET state = 'running' WHERE idx = 2").run();
  db.close();
  // Until it is finished, the checkpoints read as they are: the new top's bitmaps record already.
  const again = await strata(c.home, 'snapshot', '--socket', c.daemon.socket, '--node', 'disk', newTop, '--checkpoint', 'c3', '--yes', '--json');
  assert.equal(again.code, 0, again.err);
  const out = JSON.parse(again.out);
  assert.match(out.recovered[0], /plan #1 \(interrupted\): done: resumed after a restart/);
  assert.equal(out.outcome, null, 'the same snapshot is not taken twice');
  await guestWrites(c, 'top', ['write -P 0x72 12M 64k']);
  await c.stop();
  assertTruth(c, newTop, c.truth);
  assert.equal(total(sinceOf(newTop, 'c3').extents), 64 * 1024);
});

test('Strata killed while the overlay file was being made (a broken file left): the app start rolls back and removes it', { timeout: 120000 }, async (t) => {
  const c = await liveChain(t);
  const newTop = path.join(c.dir, 'top.qcow2');
  const r = core(c, newTop, { CRASH_AT: 'after-step-0' });
  assert.equal(r.signal, 'SIGKILL', r.err);
  // As a kill inside qemu-img create would leave it: the step running, the file cut short.
  fs.truncateSync(newTop, 100);
  const { default: Database } = await import('better-sqlite3');
  const raw = new Database(path.join(c.home, 'strata.db'));
  raw.prepare("UPDATE plan_steps SET state = 'running' WHERE idx = 0").run();
  raw.close();
  const out = await appStart(c);
  assert.deepEqual(out.map((p) => [p.kind, p.state]), [['snapshot-live', 'rolled-back']]);
  assert.equal(fs.existsSync(newTop), false, 'the broken file is gone');
  assert.deepEqual(Object.keys((await graph(c.daemon.socket)).bitmaps), ['disk']);
  // The next snapshot into the same file works.
  const again = await strata(c.home, 'snapshot', '--socket', c.daemon.socket, '--node', 'disk', newTop, '--yes', '--json');
  assert.equal(again.code, 0, again.err);
  await c.stop();
  assertTruth(c, newTop, c.truth);
});

test('Strata killed with the overlay open: the app start closes it and removes the file; the checkpoints read as before', { timeout: 120000 }, async (t) => {
  const c = await liveChain(t);
  const newTop = path.join(c.dir, 'top.qcow2');
  const r = core(c, newTop, { CRASH_AT: 'after-step-1' });
  assert.equal(r.signal, 'SIGKILL', r.err);
  const out = await appStart(c);
  assert.deepEqual(out.map((p) => [p.kind, p.state]), [['snapshot-live', 'rolled-back']]);
  assert.equal(fs.existsSync(newTop), false);
  assert.deepEqual((await graph(c.daemon.socket)).bitmaps, { disk: ['b1:rec', 'b2:rec'] });
  await guestWrites(c, 'disk', ['write -P 0x73 11M 64k']);
  await c.stop();
  assertTruth(c, c.mid, c.truth);
});
