// End to end for Snapshot… and Stream… on a running disk (a qemu-storage-daemon standing in for the
// VM, attached by its QMP socket): in the Connections view, the disk's top node offers both with the
// chain view's preview ("changes since" before and after, the exact QMP) and confirmation; the live
// snapshot with a new checkpoint switches the disk over and the graph shows the new top; the chain
// read live has every checkpoint ok; the stream pulls everything into the new top and the graph shows
// one layer. Screenshots: test-output/screenshots/chain-op-live-*.png.
import { test } from 'vitest';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { startDaemon } from '../helpers/storage-daemon.ts';
import { qemuInfoChain } from '../helpers/qemu.ts';
import { sinceOf } from '../helpers/truth.ts';
import { addImage, buildSeed, e2eSuite } from './e2e-helpers.ts';

const suite = e2eSuite('strata-e2e-chain-ops-live-');
const K = 1024;

test('a running disk: live snapshot with a checkpoint, then live stream, each previewed and confirmed', async (t) => {
  const app = await suite.open(t, 'live-ops');
  const { page } = app;
  const top = buildSeed(path.join(app.dataDir, 'seed'));
  const vms = path.join(app.dataDir, 'vms');
  fs.mkdirSync(vms);
  const vm = await startDaemon(t, vms, ['--blockdev', `driver=qcow2,node-name=disk0,file.driver=file,file.filename=${top}`]);
  const node = (name: string) => page.locator(`[data-testid="block-node"][data-name="${name}"]`);

  await page.getByTestId('welcome-panel').waitFor();
  await page.getByTestId('nav-connections').click();
  await page.getByTestId('connect-mode-socket').click();
  await page.getByTestId('add-socket-path').fill(vm.socket);
  await page.getByTestId('add-socket-submit').click();
  await node('disk0').waitFor();
  const ops = page.locator('[data-testid="chain-ops"][data-live="disk0"]');
  await ops.waitFor();

  // ----- Snapshot…: the preview carries the top's recording bitmap and the new checkpoint; nothing is written.
  await ops.getByTestId('chain-op-snapshot').click();
  const newTop = path.join(path.dirname(top), 'top-snap.qcow2');
  assert.equal(await ops.getByTestId('chain-op-new-top').inputValue(), newTop);
  await ops.getByTestId('chain-op-checkpoint').fill('snap1');
  await ops.getByTestId('chain-op-preview').click();
  await ops.getByTestId('chain-op-summary').waitFor();
  assert.match(await ops.getByTestId('chain-op-summary').innerText(), /live snapshot of node 'disk0' \(top\.qcow2\) into top-snap\.qcow2 as node 'top-snap'/);
  assert.deepEqual(await ops.getByTestId('chain-op-carried').evaluateAll((els) => els.map((e) => e.getAttribute('data-name'))), ['bitmap3', 'snap1']);
  for (const [name, drawing] of [['bitmap1', '--11111-'], ['bitmap2', '---1111-'], ['bitmap3', '---1-11-']]) {
    const row = ops.locator(`[data-testid="chain-op-view"][data-name="${name}"]`);
    assert.match(await row.getByTestId('chain-op-before').innerText(), new RegExp(`^${drawing}`), name);
    assert.match(await row.getByTestId('chain-op-after').innerText(), new RegExp(`^${drawing}`), name);
  }
  await ops.getByTestId('chain-op-steps').locator('summary').click();
  const qmp = await ops.getByTestId('chain-op-qmp').allInnerTexts();
  assert.deepEqual(qmp.map((q) => JSON.parse(q).execute), ['blockdev-add', 'transaction']);
  assert.deepEqual(JSON.parse(qmp[1]).arguments.actions[0], { type: 'blockdev-snapshot', data: { node: 'disk0', overlay: 'top-snap' } });
  assert.match((await ops.getByTestId('chain-op-command').allInnerTexts())[0], new RegExp(`^qemu-img create -q -f qcow2 -b ${top} -F qcow2 ${newTop} `));
  assert.equal(fs.existsSync(newTop), false, 'the preview wrote nothing');
  await app.shot('chain-op-live-snapshot-preview');
  await ops.getByTestId('chain-op-apply').click();
  const dialog = page.getByTestId('chain-op-dialog');
  await dialog.waitFor();
  assert.match(await dialog.innerText(), /switches over to top-snap\.qcow2 in one transaction/);
  await app.shot('chain-op-live-snapshot-confirm');
  await page.getByTestId('confirm-yes').click();
  await page.getByTestId('toast').filter({ hasText: 'top-snap.qcow2 (node top-snap) takes the disk’s writes now' }).waitFor({ timeout: 30_000 });

  // The graph shows the new top over the old one, with the checkpoint bitmaps recording in it.
  await node('top-snap').waitFor();
  const layers = await page.locator('[data-testid="block-node"][data-driver="qcow2"]').evaluateAll((els) => els.map((e) => [e.getAttribute('data-file'), e.getAttribute('data-readonly')]));
  assert.deepEqual(layers, [
    [newTop, 'false'],
    [top, 'true'],
    [path.join(path.dirname(top), 'base.qcow2'), 'true'],
  ]);
  for (const b of ['bitmap3', 'snap1']) await page.locator(`[data-testid="live-bitmap-chip"][data-node="top-snap"][data-name="${b}"]`).waitFor();
  await page.locator('[data-testid="chain-ops"][data-live="top-snap"]').waitFor();
  await app.shot('chain-op-live-snapshotted');

  // The chain read live (the VM holds it): every checkpoint ok.
  await page.getByTestId('nav-workspace').click();
  await addImage(page, newTop);
  await page.getByTestId('chain-view').waitFor();
  await page.locator('[data-testid="checkpoint"][data-name="snap1"]').waitFor();
  assert.deepEqual(await page.locator('[data-testid="checkpoint"]').evaluateAll((els) => els.map((e) => [e.getAttribute('data-name'), e.getAttribute('data-state')])), [
    ['bitmap1', 'ok'],
    ['bitmap2', 'ok'],
    ['bitmap3', 'ok'],
    ['snap1', 'ok'],
  ]);
  await app.shot('chain-op-live-checkpoints');

  // ----- Stream… on the new top: every layer below it, carried into it, through the connection's job engine.
  await page.getByTestId('nav-connections').click();
  const ops2 = page.locator('[data-testid="chain-ops"][data-live="top-snap"]');
  await ops2.getByTestId('chain-op-stream').click();
  await ops2.getByTestId('chain-op-preview').click();
  await ops2.getByTestId('chain-op-summary').waitFor();
  assert.deepEqual(await ops2.getByTestId('chain-op-carried').evaluateAll((els) => els.map((e) => e.textContent?.replace(/\s+/g, ' ').trim())), [
    'bitmap1 created from base.qcow2',
    'bitmap2 created from base.qcow2',
    'bitmap3 merged from top.qcow2',
  ]);
  await ops2.getByTestId('chain-op-steps').locator('summary').click();
  assert.deepEqual((await ops2.getByTestId('chain-op-qmp').allInnerTexts()).map((q) => JSON.parse(q).execute), ['transaction', 'block-stream']);
  await app.shot('chain-op-live-stream-preview');
  await ops2.getByTestId('chain-op-apply').click();
  await page.getByTestId('confirm-yes').click();
  await page.getByTestId('toast').filter({ hasText: 'Streamed into top-snap.qcow2, every checkpoint kept' }).waitFor({ timeout: 30_000 });
  // The job was dismissed by the plan, so the graph is read again: the disk is one layer. (QEMU keeps
  // node disk0, which the command line named, as a node of its own, backing nothing.)
  const disk = page.getByTestId('block-disk').filter({ has: node('top-snap') });
  await disk.locator('[data-testid="block-node"]').and(page.locator('[data-driver="qcow2"]')).nth(1).waitFor({ state: 'detached' });
  assert.equal(await disk.locator('[data-testid="block-node"][data-driver="qcow2"]').count(), 1);
  assert.equal(await disk.getByTestId('block-node').filter({ has: page.getByText('bitmap1') }).count(), 1);
  assert.equal(await page.getByTestId('graph-held').count(), 0);
  await app.shot('chain-op-live-streamed');

  // QEMU stores the bitmaps when it stops: the file is standalone, and "changes since" is right.
  await page.locator('[data-testid="connection-item"]').first().getByTestId('connection-close').click();
  await page.getByTestId('connection-item').waitFor({ state: 'detached' });
  vm.child.kill('SIGTERM');
  await new Promise((r) => vm.child.once('exit', r));
  assert.deepEqual(qemuInfoChain(newTop).map((l: any) => l.filename), [newTop]);
  const since1 = sinceOf(newTop, 'bitmap1');
  assert.equal(since1.state, 'ok');
  assert.equal(since1.extents.reduce((n, e) => n + e.length, 0), 320 * K);
  assert.equal(sinceOf(newTop, 'snap1').extents.length, 0, 'nothing was written since snap1');
  assert.deepEqual(app.problems, []);
});
