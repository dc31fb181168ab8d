// End to end for the live side: Strata's own qemu-storage-daemon opened from the UI, its block graph,
// bitmap changes through the plan/confirm dialog, a rate-limited block-stream watched live in the Jobs
// panel, an active commit completed from READY, a daemon killed and restarted, and all of it in
// History. Real QEMU (qemu-img, qemu-io, qemu-storage-daemon), the real core, Debian's Chromium.
// Screenshots: test-output/screenshots/{connections,dialog,jobs,history}-*.png.
import { test } from 'vitest';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import type { Page } from 'playwright-core';
import { qemuImg, qemuIo } from '../helpers/qemu.ts';
import { startDaemon } from '../helpers/storage-daemon.ts';
import { addImage, buildSeed, e2eSuite, liveChip, openInDaemon } from './e2e-helpers.ts';

const MiB = 1024 * 1024;
const suite = e2eSuite('strata-e2e-jobs-');
const tmpRoot = suite.tmpRoot;

/** A 64 MiB base with 48 MiB of data and an empty overlay on it. */
function buildStreamChain(dir: string): { top: string; base: string } {
  fs.mkdirSync(dir, { recursive: true });
  const base = path.join(dir, 'base.qcow2');
  const top = path.join(dir, 'top.qcow2');
  qemuImg('create', '-q', '-f', 'qcow2', base, '64M');
  qemuIo(base, ['write -P 0x5a 0 48M']);
  qemuImg('create', '-q', '-f', 'qcow2', '-b', base, '-F', 'qcow2', top);
  return { top, base };
}

const node = (page: Page, name: string) => page.locator(`[data-testid="block-node"][data-name="${name}"]`);

/** The dialog's QMP text, once the plan is on screen. */
async function planQmp(page: Page): Promise<string> {
  await page.getByTestId('plan-qmp').waitFor();
  return page.getByTestId('plan-qmp').innerText();
}

async function visibleVerbs(page: Page, card: ReturnType<Page['locator']>): Promise<string[]> {
  return card.locator('[data-testid^="job-verb-"]').evaluateAll((els) => els.map((e) => e.getAttribute('data-testid')!.replace('job-verb-', '')));
}

test('a daemon opened read-write: graph, bitmap add through plan/confirm, a rate-limited stream live, dismissed, in History', async (t) => {
  const app = await suite.open(t, 'stream');
  const { page } = app;
  const { top, base } = buildStreamChain(path.join(app.dataDir, 'chain'));

  await page.getByTestId('welcome-panel').waitFor();
  await addImage(page, top);
  await page.getByTestId('chain-view').waitFor();

  // ----- Connections: open the image in Strata's own daemon, read-write (it warns about the lock).
  await page.getByTestId('nav-connections').click();
  await page.getByTestId('open-image-rw').check();
  assert.match(await page.getByTestId('open-image-rw-warning').innerText(), /Locks the image/);
  await app.shot('connections-open-form');
  const conn = await openInDaemon(page, true);
  const item = page.locator(`[data-testid="connection-item"][data-id="${conn.id}"]`);
  assert.equal(await item.getAttribute('data-kind'), 'daemon');
  assert.equal(await item.getByTestId('connection-kind').innerText(), 'Strata daemon');
  assert.equal(await item.getByTestId('connection-state').innerText(), 'connected');
  assert.match(await item.getByTestId('connection-version').innerText(), /^\d+\.\d+\.\d+$/);
  assert.ok(conn.pid > 1);

  // The graph: the top first, then its backing, each read-write with its file.
  const formats = page.locator('[data-testid="block-node"][data-driver="qcow2"]');
  assert.deepEqual(await formats.evaluateAll((els) => els.map((e) => e.getAttribute('data-file'))), [top, base]);
  assert.equal(await node(page, 'strata-top').getAttribute('data-readonly'), 'false');
  await app.shot('connections-graph');

  // ----- A bitmap add, planned and shown, then cancelled: nothing changes.
  await node(page, 'strata-top').getByTestId('node-add-bitmap').click();
  const dialog = page.getByTestId('bitmap-dialog');
  await dialog.waitFor();
  assert.equal(await page.evaluate(() => document.activeElement?.getAttribute('data-testid')), 'bitmap-name');
  await page.getByTestId('bitmap-name').fill('nightly');
  await page.getByTestId('bitmap-review-btn').click();
  const qmp = await planQmp(page);
  assert.match(qmp, /"block-dirty-bitmap-add"/);
  assert.match(qmp, /"name": "nightly"/);
  assert.match(qmp, /"node": "strata-top"/);
  assert.match(await page.getByTestId('plan-summary').innerText(), /add persistent bitmap 'nightly'/);
  // Focus stays in the dialog: Tab around more times than it has controls.
  for (let i = 0; i < 8; i++) await page.keyboard.press('Tab');
  assert.ok(await page.evaluate(() => !!document.activeElement?.closest('[data-testid="bitmap-dialog"]')), 'focus is trapped in the dialog');
  await app.shot('dialog-add-plan');
  await page.getByTestId('dialog-cancel').click();
  await dialog.waitFor({ state: 'detached' });
  await page.getByTestId('graph-refresh').click();
  await page.locator('[data-testid="block-graph"][data-loading="false"]').waitFor();
  assert.equal(await liveChip(page, 'strata-top', 'nightly').count(), 0, 'Cancel changed nothing');

  // Esc cancels too.
  await node(page, 'strata-top').getByTestId('node-add-bitmap').click();
  await dialog.waitFor();
  await page.keyboard.press('Escape');
  await dialog.waitFor({ state: 'detached' });

  // ----- Now for real: Apply, and the chip appears in the graph.
  await node(page, 'strata-top').getByTestId('node-add-bitmap').click();
  await page.getByTestId('bitmap-name').fill('nightly');
  await page.getByTestId('bitmap-review-btn').click();
  await planQmp(page);
  await page.getByTestId('dialog-apply').click();
  await dialog.waitFor({ state: 'detached' });
  await liveChip(page, 'strata-top', 'nightly').and(page.locator('[data-state="recording"]')).waitFor();
  assert.equal(await liveChip(page, 'strata-top', 'nightly').getAttribute('data-persistent'), 'true');

  // The connection's QMP traffic: the transaction as sent, and QEMU's reply as it wrote it.
  await page.getByTestId('connection-traffic').locator('summary').click();
  const trafficLines = page.getByTestId('connection-traffic-line');
  await trafficLines.first().waitFor();
  const sent = await trafficLines.evaluateAll((els) => els.map((e) => [e.getAttribute('data-dir') ?? '', e.textContent ?? ''] as const));
  const tx = sent.find(([dir, text]) => dir === 'out' && text.includes('"execute":"transaction"') && text.includes('"nightly"'));
  assert.ok(tx, sent.map((x) => x.join(' ')).join('\n'));
  const txId = /"id":"(strata-\d+)"/.exec(tx[1])![1];
  assert.ok(sent.some(([dir, text]) => dir === 'in' && text.includes(`{"return": {}, "id": "${txId}"}`)), 'the reply, raw');
  await app.shot('connection-traffic');
  await page.getByTestId('connection-traffic').locator('summary').click();

  // A chip's menu: disable it (planned and confirmed as well).
  await liveChip(page, 'strata-top', 'nightly').click();
  await page.getByTestId('action-menu').waitFor();
  await app.shot('connections-bitmap-menu');
  await page.getByTestId('menu-disable').click();
  assert.match(await planQmp(page), /"block-dirty-bitmap-disable"/);
  await page.getByTestId('dialog-apply').click();
  await liveChip(page, 'strata-top', 'nightly').and(page.locator('[data-state="disabled"]')).waitFor();
  await app.shot('connections-bitmap-added');

  // ----- Jobs: a stream into the top at 8 MiB/s (48 MiB of data: ~6 s, room for the screenshot
  // and two observations even on a loaded machine).
  await page.getByTestId('nav-jobs').click();
  await page.getByTestId('jobs-empty').waitFor();
  assert.equal(await page.getByTestId('job-connection-select').inputValue(), conn.id);
  await page.getByTestId('job-type-stream').check();
  await page.getByTestId('job-speed').fill('8');
  await page.getByTestId('job-start').click();
  assert.match(await page.getByTestId('start-job-summary').innerText(), /into top\.qcow2 at most 8 MiB\/s/);
  // The exact QMP; the base holds no checkpoint, so none is lost.
  assert.match(await page.getByTestId('start-job-qmp').innerText(), /^\{"execute":"block-stream","arguments":\{"device":"strata-top","speed":8388608,"job-id":"\(chosen at start\)","auto-dismiss":false\}\}$/);
  assert.equal(await page.getByTestId('start-job-lost').count(), 0);
  await page.getByTestId('confirm-yes').click();

  const card = page.getByTestId('job-card').first();
  await card.waitFor();
  const bar = card.getByTestId('job-progress');
  const seen: { state: string; current: number; total: number }[] = [];
  let verbsWhileRunning: string[] = [];
  let shotRunning = false;
  const deadline = Date.now() + 30_000;
  for (;;) {
    // One look at the card, read in the page at once: the job may conclude between two reads.
    const { state, current, total, badge, verbs } = await card.evaluate((el) => {
      const progress = el.querySelector('[data-testid="job-progress"]')!;
      return {
        state: el.getAttribute('data-state')!,
        current: Number(progress.getAttribute('data-current')),
        total: Number(progress.getAttribute('data-total')),
        badge: (el.querySelector('[data-testid="job-state"]') as HTMLElement).innerText,
        verbs: [...el.querySelectorAll('[data-testid^="job-verb-"]')].map((e) => e.getAttribute('data-testid')!.replace('job-verb-', '')),
      };
    });
    seen.push({ state, current, total });
    if (state === 'running' && current > 0) {
      assert.equal(badge, 'running');
      if (!verbsWhileRunning.length) verbsWhileRunning = verbs;
      if (!shotRunning && current > 4 * MiB && current < total) {
        await card.getByTestId('job-rate').waitFor({ timeout: 2000 }).catch(() => {});
        await app.shot('jobs-running');
        shotRunning = true;
      }
    }
    if (state === 'concluded') break;
    assert.ok(Date.now() < deadline, `the stream concluded (last seen ${JSON.stringify(seen.slice(-3))})`);
    await page.waitForTimeout(150);
  }
  const running = seen.filter((s) => s.state === 'running').map((s) => s.current);
  const distinct = [...new Set(running)];
  assert.ok(distinct.length >= 2, `progress moved at least twice while running: ${JSON.stringify(running)}`);
  for (let i = 1; i < running.length; i++) assert.ok(running[i] >= running[i - 1], `progress never goes back: ${JSON.stringify(running)}`);
  assert.ok(distinct[distinct.length - 1] > distinct[0]);
  assert.deepEqual(verbsWhileRunning.sort(), ['cancel', 'pause']);

  // Concluded: the full bar, the badge, and only Dismiss offered (QEMU allows only job-dismiss now).
  assert.equal(await card.getByTestId('job-state').innerText(), 'concluded');
  assert.equal(await card.getAttribute('data-outcome'), 'ok');
  assert.equal(await bar.getAttribute('aria-valuenow'), '100');
  assert.deepEqual(await visibleVerbs(page, card), ['dismiss']);
  await app.shot('jobs-concluded');

  // Until it is dismissed, QEMU 7.2 must not be asked for its block nodes (it crashes): the graph says so.
  await page.getByTestId('nav-connections').click();
  await page.getByTestId('graph-held').waitFor();
  assert.equal(await page.getByTestId('node-add-bitmap').count(), 0, 'no bitmap change offered meanwhile');
  await app.shot('connections-stream-held');
  await page.getByTestId('nav-jobs').click();
  await card.getByTestId('job-verb-dismiss').click();
  await page.getByTestId('jobs-empty').waitFor();

  // The stream pulled the base's data up: the graph (read again once dismissed) has the top alone.
  await page.getByTestId('nav-connections').click();
  await page.getByTestId('graph-held').waitFor({ state: 'detached' });
  await page.waitForFunction(() => document.querySelectorAll('[data-testid="block-node"][data-driver="qcow2"]').length === 1);
  assert.equal(await formats.first().getAttribute('data-file'), top);
  await liveChip(page, 'strata-top', 'nightly').waitFor();

  // ----- History: the job with every state it went through, and both bitmap changes.
  await page.getByTestId('nav-history').click();
  await page.getByTestId('activity-view').waitFor();
  await page.getByTestId('activity-filter-text').fill('top.qcow2');
  await page.getByTestId('activity-kind-job').click();
  const jobRow = page.locator('[data-testid="activity-item"][data-kind="job"]');
  await jobRow.first().waitFor();
  assert.equal(await jobRow.count(), 1);
  assert.equal(await jobRow.getAttribute('data-state'), 'null');
  await jobRow.locator('button').click();
  const states = await page.getByTestId('job-event').evaluateAll((els) => els.map((e) => e.getAttribute('data-state')));
  assert.deepEqual(states, ['undefined', 'created', 'running', 'waiting', 'pending', 'concluded', 'null']);
  // Its log: the QMP Strata sent (auto-dismiss off, the speed limit) and what QEMU answered, under the state it was sent in.
  const log = await page.getByTestId('job-log-line').allInnerTexts();
  assert.ok(log.some((l) => /"execute":"block-stream"/.test(l) && /"auto-dismiss":false/.test(l) && /"speed":8388608/.test(l)), log.join('\n'));
  assert.ok(log.some((l) => /"execute":"job-dismiss"/.test(l)), log.join('\n'));
  await app.shot('history-job-detail');

  // The state filter: dismissed jobs only, then a time range that excludes everything.
  await page.getByTestId('activity-filter-state').selectOption('null');
  assert.equal(await jobRow.count(), 1);
  await page.getByTestId('activity-kind-op').click();
  const ops = page.locator('[data-testid="activity-item"][data-kind="op"]');
  await page.getByTestId('activity-filter-state').selectOption('done');
  assert.equal(await ops.count(), 2);
  await page.getByTestId('activity-filter-time').selectOption('custom');
  await page.getByTestId('activity-filter-to').fill('2001-01-01T00:00:00');
  await page.getByTestId('activity-empty').waitFor();
  await page.getByTestId('activity-reset').click();
  assert.ok((await page.getByTestId('activity-item').count()) >= 4, 'scans, the job and the two changes');
  await app.shot('history-all');

  assert.deepEqual(app.problems, []);
});

test('offline bitmap changes from the chain view, a refused persistent bitmap, an active commit completed at READY, a lost daemon restarted', async (t) => {
  const app = await suite.open(t, 'commit');
  const { page } = app;
  const top = buildSeed(path.join(app.dataDir, 'seed'));
  const base = path.join(path.dirname(top), 'base.qcow2');

  await page.getByTestId('welcome-panel').waitFor();
  await addImage(page, top);
  await page.getByTestId('chain-view').waitFor();

  // ----- Offline: disable bitmap2 in the base layer through a fresh daemon; the chain is read again.
  await page.locator(`[data-testid="bitmap-actions"][data-name="bitmap2"][data-layer="${base}"]`).click();
  await page.getByTestId('action-menu').waitFor();
  await app.shot('workspace-bitmap-menu');
  await page.getByTestId('menu-disable').click();
  const dialog = page.getByTestId('bitmap-dialog');
  assert.match(await planQmp(page), /"block-dirty-bitmap-disable"/);
  assert.match(await page.getByTestId('plan-summary').innerText(), /disable bitmap 'bitmap2' in .*base\.qcow2/);
  await app.shot('dialog-offline-disable');
  await page.getByTestId('dialog-apply').click();
  await dialog.waitFor({ state: 'detached' });
  await page.locator('[data-testid="bitmap-chip"][data-name="bitmap2"][data-state="disabled"]').waitFor();

  // A merge: bitmap1 (base, below) into bitmap3 of the top, chosen in the form, shown as QMP.
  await page.locator(`[data-testid="bitmap-actions"][data-name="bitmap3"][data-layer="${top}"]`).click();
  await page.getByTestId('menu-merge').click();
  await page.locator('[data-testid="merge-source"][data-name="bitmap1"]').click();
  await page.getByTestId('bitmap-review-btn').click();
  const mergeQmp = await planQmp(page);
  assert.match(mergeQmp, /"block-dirty-bitmap-merge"/);
  assert.match(mergeQmp, /"target": "bitmap3"/);
  await app.shot('dialog-merge-plan');
  await page.getByTestId('dialog-back').click();
  await page.getByTestId('bitmap-form').waitFor();
  await page.getByTestId('dialog-cancel').click();
  await dialog.waitFor({ state: 'detached' });

  // ----- Read-only daemon: a persistent bitmap is refused in plain words, shown with its code.
  const ro = await openInDaemon(page, false);
  assert.equal(await node(page, 'strata-top').getAttribute('data-readonly'), 'true');
  await node(page, 'strata-top').getByTestId('node-add-bitmap').click();
  await page.getByTestId('bitmap-name').fill('kept');
  assert.equal(await page.getByTestId('bitmap-persistent').isChecked(), false, 'transient by default on a read-only node');
  await page.getByTestId('bitmap-persistent').check();
  await page.getByTestId('bitmap-review-btn').click();
  const refused = page.locator('[data-testid="bitmap-plan-error"][data-code="E_BAD_INPUT"]');
  await refused.waitFor();
  assert.match(await refused.innerText(), /read-only/);
  await app.shot('dialog-readonly-refused');
  await page.getByTestId('dialog-cancel').click();
  await page.locator(`[data-testid="connection-item"][data-id="${ro.id}"] [data-testid="connection-close"]`).click();
  await page.locator(`[data-testid="connection-item"][data-id="${ro.id}"]`).waitFor({ state: 'detached' });

  // ----- Read-write, active commit of the top into the base: READY, then Complete.
  const rw = await openInDaemon(page, true);
  await page.getByTestId('connection-start-job').click();
  await page.getByTestId('jobs-view').waitFor();
  await page.getByTestId('job-type-commit').check();
  await page.getByTestId('job-commit-active').check();
  await page.getByTestId('job-start').click();
  assert.match(await page.getByTestId('start-job-summary').innerText(), /top\.qcow2 down into base\.qcow2/);
  await page.getByTestId('confirm-yes').click();
  const card = page.locator('[data-testid="job-card"][data-type="block-commit"]');
  await card.and(page.locator('[data-state="ready"]')).waitFor({ timeout: 20_000 });
  assert.equal(await card.getByTestId('job-state').innerText(), 'ready');
  assert.deepEqual((await visibleVerbs(page, card)).sort(), ['cancel', 'complete', 'pause']);
  await app.shot('jobs-ready');
  // Cancel asks first; keeping the job changes nothing.
  await card.getByTestId('job-verb-cancel').click();
  await page.getByTestId('cancel-job-dialog').waitFor();
  await app.shot('dialog-cancel-job');
  await page.getByTestId('confirm-no').click();
  await page.getByTestId('cancel-job-dialog').waitFor({ state: 'detached' });
  assert.equal(await card.getAttribute('data-state'), 'ready');
  // Complete cannot be undone: it is confirmed first, with its QMP.
  await card.getByTestId('job-verb-complete').click();
  await page.getByTestId('complete-job-dialog').waitFor();
  assert.match(await page.getByTestId('complete-job-qmp').innerText(), /"execute":"job-complete"/);
  await page.getByTestId('confirm-yes').click();
  await card.and(page.locator('[data-state="concluded"]')).waitFor({ timeout: 20_000 });
  assert.equal(await card.getAttribute('data-outcome'), 'ok');
  await card.getByTestId('job-verb-dismiss').click();
  await page.getByTestId('jobs-empty').waitFor();

  // ----- The daemon dies: lost, with the reason; Restart brings it back with a new process.
  await page.getByTestId('nav-connections').click();
  process.kill(rw.pid, 'SIGKILL');
  const item = page.locator(`[data-testid="connection-item"][data-id="${rw.id}"]`);
  await item.and(page.locator('[data-state="lost"]')).waitFor();
  assert.match(await item.getByTestId('connection-error').innerText(), /exited|SIGKILL|closed|ECONNRESET/);
  await page.getByTestId('connection-lost').waitFor();
  await app.shot('connections-lost');
  await item.getByTestId('connection-restart').click();
  await item.and(page.locator('[data-state="connected"]')).waitFor();
  assert.notEqual(Number(await item.getByTestId('connection-pid').innerText()), rw.pid);
  await node(page, 'strata-top').waitFor();

  // History has the commit with its READY and the two offline bitmap changes.
  await page.getByTestId('nav-history').click();
  const commit = page.locator('[data-testid="activity-item"][data-kind="job"]');
  await commit.first().waitFor();
  await commit.first().locator('button').click();
  const states = await page.getByTestId('job-event').evaluateAll((els) => els.map((e) => e.getAttribute('data-state')));
  assert.ok(states.includes('ready') && states.includes('concluded') && states.includes('null'), JSON.stringify(states));
  assert.equal(await page.locator('[data-testid="activity-item"][data-kind="op"]').count(), 1);

  assert.deepEqual(app.problems, []);
});

test('VM sockets: a folder scan finds the monitor, its graph, a transient bitmap with the libvirt caution, attach again, close lets go', async (t) => {
  const app = await suite.open(t, 'vm');
  const { page } = app;
  const top = buildSeed(path.join(app.dataDir, 'seed'));
  // A stand-in for a running VM: a qemu-storage-daemon with its disk as node 'disk0' and a monitor socket.
  const vms = path.join(app.dataDir, 'vms');
  fs.mkdirSync(vms);
  const vm = await startDaemon(t, vms, ['--blockdev', `driver=qcow2,node-name=disk0,file.driver=file,file.filename=${top}`]);
  const sock = path.join(vms, 'vm1.qmp');
  fs.renameSync(vm.socket, sock);
  fs.writeFileSync(path.join(vms, 'notes.sock'), 'not a socket');

  await page.getByTestId('welcome-panel').waitFor();
  await page.getByTestId('nav-connections').click();
  await page.getByTestId('connect-mode-folder').click();
  await page.getByTestId('scan-folder-path').fill(vms);
  await page.getByTestId('scan-folder-submit').click();
  const item = page.locator('[data-testid="connection-item"][data-kind="socket"]');
  await item.and(page.locator('[data-state="connected"]')).waitFor();
  assert.equal(await page.getByTestId('connection-item').count(), 1, 'the plain file named .sock is skipped');
  assert.equal(await item.getByTestId('connection-kind').innerText(), 'VM socket');
  await page.getByTestId('toast').filter({ hasText: 'Found 1 QMP socket' }).waitFor();

  // Its graph: the VM's own node name on top, the backing layer below.
  await node(page, 'disk0').waitFor();
  assert.equal(await page.locator('[data-testid="block-node"][data-driver="qcow2"]').count(), 2);
  await liveChip(page, 'disk0', 'bitmap3').waitFor();

  // A transient bitmap on a VM: the plan says so and carries the libvirt caution.
  await node(page, 'disk0').getByTestId('node-add-bitmap').click();
  await page.getByTestId('bitmap-name').fill('scratch');
  await page.getByTestId('bitmap-persistent').uncheck();
  await page.getByTestId('bitmap-review-btn').click();
  assert.match(await planQmp(page), /"persistent": false/);
  assert.match(await page.getByTestId('bitmap-dialog').innerText(), /libvirt/);
  await page.getByTestId('dialog-apply').click();
  await liveChip(page, 'disk0', 'scratch').waitFor();
  assert.equal(await liveChip(page, 'disk0', 'scratch').getAttribute('data-persistent'), 'false');
  await app.shot('connections-vm');

  // "Show contents…" on the VM's bitmap: its disk is not in the workspace yet, so it says which file to add.
  await liveChip(page, 'disk0', 'bitmap3').click();
  await page.getByTestId('menu-inspect').click();
  await page.getByTestId('toast').filter({ hasText: 'Add top.qcow2 (or an image whose chain holds it) to the workspace' }).waitFor();
  // Added: the VM holds it, so its checkpoints are the VM's live ones (before: unknown, "in-use").
  await page.getByTestId('nav-workspace').click();
  await addImage(page, top);
  await page.getByTestId('chain-view').waitFor();
  await page.locator('[data-testid="checkpoint"][data-name="bitmap3"][data-state="ok"]').waitFor();
  assert.match(await page.getByTestId('chain-held').innerText(), /a VM Strata is connected to \(vm1\.qmp\).*read live/s);
  assert.equal(await page.locator('[data-testid="layer-live"]:not([data-error])').count(), 2);
  // Now the same action opens the inspector on that workspace image, on the VM's live bitmap.
  await page.getByTestId('nav-connections').click();
  await liveChip(page, 'disk0', 'bitmap3').click();
  await page.getByTestId('menu-inspect').click();
  const canvas = page.getByTestId('inspector-canvas');
  await canvas.and(page.locator('[data-state="ready"], [data-state="error"]')).waitFor();
  assert.equal(await canvas.getAttribute('data-state'), 'ready');
  assert.equal(await canvas.getAttribute('data-marked'), '---1-11-');
  await app.shot('vm-bitmap-inspected');
  await page.getByTestId('nav-connections').click();

  // The same socket again is the same connection (QEMU serves one client per monitor).
  await page.getByTestId('connect-mode-socket').click();
  await page.getByTestId('add-socket-path').fill(sock);
  await page.getByTestId('add-socket-submit').click();
  await page.waitForFunction(() => (document.querySelector('[data-testid="add-socket-path"]') as HTMLInputElement).value === '');
  assert.equal(await page.getByTestId('connection-item').count(), 1);
  // A wrong path: the core's error, with its code.
  await page.getByTestId('add-socket-path').fill(path.join(vms, 'nope.sock'));
  await page.getByTestId('add-socket-submit').click();
  await page.locator('[data-testid="connections-error"][data-code="E_QMP_CONNECT"]').waitFor();

  // Close: Strata lets go; the VM goes on.
  await item.getByTestId('connection-close').click();
  await item.waitFor({ state: 'detached' });
  assert.equal(vm.child.exitCode, null, 'the VM still runs');

  assert.deepEqual(app.problems, []);
});
