// End to end for plans and live inspection: "Commit, keeping the checkpoints" (the commit-with-bitmaps
// plan) started from the Jobs form on a chain whose base has two recording persistent bitmaps, followed
// step by step on its card and found in History; and "Show contents…" on a live bitmap chip, which opens
// the workspace image's inspector on that bitmap read live over NBD.
// Screenshots: test-output/screenshots/plans-*.png, live-inspector.png.
import { test } from 'vitest';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import type { Page } from 'playwright-core';
import { qemuImg, qemuIo } from '../helpers/qemu.ts';
import { addImage, buildSeed, e2eSuite, liveChip, openInDaemon } from './e2e-helpers.ts';

const suite = e2eSuite('strata-e2e-plans-');
const tmpRoot = suite.tmpRoot;

test("commit keeping the checkpoints on the seed's chain: the preview says what is carried, and every checkpoint keeps its changes", async (t) => {
  const app = await suite.open(t, 'plan');
  const { page } = app;
  // The steps: the seed chain's top.qcow2 open read-write, a bitmap 'nightly' added on the top.
  const top = buildSeed(path.join(app.dataDir, 'seed'));
  const base = path.join(path.dirname(top), 'base.qcow2');

  await page.getByTestId('welcome-panel').waitFor();
  await addImage(page, top);
  await page.getByTestId('chain-view').waitFor();
  await openInDaemon(page, true);

  // A bitmap change first (on the top): its QMP shows in History's detail below.
  await page.locator('[data-testid="block-node"][data-name="strata-top"]').getByTestId('node-add-bitmap').click();
  await page.getByTestId('bitmap-name').fill('nightly');
  await page.getByTestId('bitmap-review-btn').click();
  await page.getByTestId('plan-qmp').waitFor();
  await page.getByTestId('dialog-apply').click();
  await liveChip(page, 'strata-top', 'nightly').waitFor();

  await page.getByTestId('nav-jobs').click();
  await page.getByTestId('jobs-view').waitFor();
  // A plain stream or commit would lose the checkpoints of the layers that leave the chain: it says which.
  await page.getByTestId('job-type-stream').check();
  await page.getByTestId('job-start').click();
  const lost = page.getByTestId('start-job-lost');
  await lost.waitFor();
  assert.match(await lost.innerText(), /‘bitmap1’ \(base\.qcow2\), ‘bitmap2’ \(base\.qcow2\)/);
  await app.shot('plans-stream-warns');
  await page.getByTestId('confirm-no').click();
  await page.getByTestId('job-type-commit').check();
  await page.getByTestId('job-start').click();
  assert.match(await page.getByTestId('start-job-lost').innerText(), /‘bitmap3’ \(top\.qcow2\), ‘nightly’ \(top\.qcow2\).*carries them into the base instead/);
  assert.match(await page.getByTestId('start-job-qmp').innerText(), /"execute":"block-commit"/);
  await page.getByTestId('confirm-no').click();

  await page.getByTestId('job-type-plan').check();
  assert.match(await page.getByTestId('job-type-plan-help').innerText(), /carries the top’s bitmaps into it/);
  assert.equal(await page.getByTestId('job-speed').count(), 0, 'the plan takes no speed limit');
  assert.ok(await page.getByTestId('plan-scheme-seed').isChecked());
  await app.shot('plans-form');
  await page.getByTestId('job-start').click();
  const dialog = page.getByTestId('start-job-dialog');
  await dialog.waitFor();
  // The preview: which checkpoints survive, which bitmaps are carried, the exact QMP.
  assert.match(await dialog.getByTestId('start-job-summary').innerText(), /'bitmap2' disabled during the commit; 'bitmap3', 'nightly' carried from the top/);
  assert.equal(await dialog.getByTestId('plan-effects-kept').innerText().then((x) => x.split(' · ')[0]), '‘bitmap1’, ‘bitmap2’, ‘bitmap3’, ‘nightly’');
  assert.deepEqual(await dialog.getByTestId('plan-effects-carried').evaluateAll((els) => els.map((e) => e.getAttribute('data-name'))), ['bitmap3', 'nightly']);
  assert.equal(await dialog.getByTestId('plan-effects-lost').count(), 0);
  await dialog.getByTestId('plan-steps-qmp').locator('summary').click();
  const qmp = await dialog.getByTestId('plan-preview-qmp').allInnerTexts();
  assert.ok(qmp.some((q) => /"block-dirty-bitmap-merge".*"target":"bitmap3".*"node":"strata-top","name":"bitmap3"/.test(q)), qmp.join('\n'));
  await app.shot('plans-preview');
  await page.getByTestId('confirm-yes').click();

  const card = page.getByTestId('plan-card').first();
  await card.waitFor();
  await page.locator('[data-testid="plan-card"][data-state="done"]').first().waitFor({ timeout: 60_000 });
  const steps = card.getByTestId('plan-card-step');
  // Disable bitmap2, commit until READY, carry, complete, enable with the switch-over's writes, remove the temporary bitmap.
  assert.equal(await steps.count(), 6);
  assert.deepEqual(await steps.evaluateAll((els) => els.map((e) => e.getAttribute('data-state'))), ['done', 'done', 'done', 'done', 'done', 'done']);
  const labels = await steps.evaluateAll((els) => els.map((e) => e.textContent ?? ''));
  assert.match(labels[0], /disable 'bitmap2'/);
  assert.match(labels[2], /carry 'bitmap3', 'nightly'/);
  assert.match(labels[4], /enable 'bitmap2', 'bitmap3', 'nightly'/);
  await card.getByTestId('plan-effects').waitFor();
  assert.equal(await card.getByTestId('plan-state').innerText(), 'done');
  // A plan that ran through has no resolution note (that is for plans finished or undone after a restart).
  if (await card.getByTestId('plan-resolution').count()) assert.match(await card.getByTestId('plan-resolution').innerText(), /\S/);
  await app.shot('plans-done');

  // The base node holds all four, three recording.
  await page.getByTestId('nav-connections').click();
  await page.getByTestId('graph-refresh').click();
  const baseNode = page.locator(`[data-testid="block-node"][data-file="${base}"]`);
  await baseNode.locator('[data-testid="live-bitmap-chip"][data-name="nightly"]').waitFor();
  assert.equal(await baseNode.locator('[data-testid="live-bitmap-chip"][data-state="recording"]').count(), 3);

  // Close the daemon (QEMU stores the bitmaps), add base.qcow2: bitmap2 still holds its 256 KiB of changes.
  await page.getByTestId('connection-close').first().click();
  if (await page.getByTestId('confirm-yes').count()) await page.getByTestId('confirm-yes').click();
  // Only once the daemon is gone are the bitmaps stored and the file free: then read it from disk.
  await page.getByTestId('connection-item').waitFor({ state: 'detached' });
  await page.getByTestId('nav-workspace').click();
  await addImage(page, base);
  const cp = (name: string) => page.locator(`[data-testid="checkpoint"][data-name="${name}"]`);
  await cp('bitmap2').waitFor();
  assert.equal(await cp('bitmap2').getAttribute('data-state'), 'ok');
  assert.match(await cp('bitmap2').innerText(), /256 KiB/);
  assert.match(await cp('bitmap1').innerText(), /320 KiB/);
  assert.match(await cp('bitmap3').innerText(), /192 KiB/);
  await app.shot('plans-base-checkpoints');

  // ----- History: the plan, with its steps and resolution.
  await page.getByTestId('nav-history').click();
  await page.getByTestId('activity-view').waitFor();
  await page.getByTestId('activity-kind-plan').click();
  const row = page.locator('[data-testid="activity-item"][data-kind="plan"]');
  await row.first().waitFor();
  assert.equal(await row.count(), 1);
  assert.equal(await row.first().getAttribute('data-state'), 'done');
  await row.first().locator('button').click();
  const detail = page.getByTestId('activity-detail');
  assert.equal(await detail.getByTestId('activity-plan-title').innerText(), 'Commit, keeping the checkpoints');
  assert.deepEqual(await detail.getByTestId('plan-step').evaluateAll((els) => els.map((e) => e.getAttribute('data-state'))), ['done', 'done', 'done', 'done', 'done', 'done']);
  await detail.getByTestId('activity-plan-resolution').waitFor();
  await app.shot('plans-history');

  // The bitmap change's detail shows the QMP exchanged: sent, then received.
  await page.getByTestId('activity-kind-op').click();
  const op = page.locator('[data-testid="activity-item"][data-kind="op"]');
  await op.first().locator('button').click();
  const lines = detail.getByTestId('op-log-line');
  await lines.first().waitFor();
  assert.equal(await lines.first().getAttribute('data-dir'), 'out');
  assert.match(await lines.first().innerText(), /block-dirty-bitmap-add/);
  assert.ok((await lines.evaluateAll((els) => els.map((e) => e.getAttribute('data-dir')))).includes('in'));
  await app.shot('plans-history-op-log');
  assert.deepEqual(app.problems, []);
});

test('Show contents… on a live bitmap opens the inspector on it, read live over NBD', async (t) => {
  const app = await suite.open(t, 'live-insp');
  const { page } = app;
  const top = buildSeed(path.join(app.dataDir, 'seed'));

  await page.getByTestId('welcome-panel').waitFor();
  await addImage(page, top);
  await page.getByTestId('chain-view').waitFor();
  await openInDaemon(page, false);

  await liveChip(page, 'strata-top', 'bitmap3').click();
  await page.getByTestId('action-menu').waitFor();
  await page.getByTestId('menu-inspect').click();

  // The workspace, the image's Inspector tab, on the live source.
  await page.getByTestId('tab-inspector').and(page.locator('[aria-selected="true"]')).waitFor();
  const canvas = page.getByTestId('inspector-canvas');
  await canvas.and(page.locator('[data-state="ready"], [data-state="error"]')).waitFor();
  assert.equal(await canvas.getAttribute('data-state'), 'ready');
  assert.match(await page.getByTestId('inspector-title').innerText(), /bitmap3.*live/i);
  assert.equal(await canvas.getAttribute('data-marked'), '---1-11-');
  await app.shot('live-inspector');
  assert.deepEqual(app.problems, []);
});

test('a running job’s speed limit can be changed from its card (set-speed)', async (t) => {
  const app = await suite.open(t, 'speed');
  const { page } = app;
  const dir = path.join(app.dataDir, 'chain');
  fs.mkdirSync(dir, { recursive: true });
  const base = path.join(dir, 'base.qcow2');
  const top = path.join(dir, 'top.qcow2');
  qemuImg('create', '-q', '-f', 'qcow2', base, '64M');
  qemuIo(base, ['write -P 0x5a 0 32M']);
  qemuImg('create', '-q', '-f', 'qcow2', '-b', base, '-F', 'qcow2', top);

  await page.getByTestId('welcome-panel').waitFor();
  await addImage(page, top);
  await page.getByTestId('chain-view').waitFor();
  await openInDaemon(page, true);
  await page.getByTestId('nav-jobs').click();
  await page.getByTestId('job-type-stream').check();
  // 1 MiB/s: 32 MiB would take half a minute.
  await page.getByTestId('job-speed').fill('1');
  await page.getByTestId('job-start').click();
  await page.getByTestId('confirm-yes').click();
  const card = page.getByTestId('job-card').first();
  await card.and(page.locator('[data-state="running"]')).waitFor();
  await card.getByTestId('job-speed-form').waitFor();
  await card.getByTestId('job-speed-input').fill('0');
  // Unlimited, the job may finish (and its card drop the speed form) before the next look from
  // here: the page itself notes what the card says once the change is made.
  await card.evaluate((el) => {
    (window as any).speedSet = new Promise<string>((resolve) => {
      const look = new MutationObserver(() => {
        const s = el.querySelector('[data-testid="job-speed-set"]');
        if (s) {
          look.disconnect();
          resolve(s.textContent!.trim());
        }
      });
      look.observe(el, { subtree: true, childList: true, characterData: true });
    });
  });
  await card.getByTestId('job-speed-apply').click();
  assert.equal(await page.evaluate(() => (window as any).speedSet), 'unlimited');
  await app.shot('plans-job-speed');
  // Unlimited: it finishes long before the half minute.
  await page.locator('[data-testid="job-card"][data-state="concluded"]').waitFor({ timeout: 15_000 });
  assert.deepEqual(app.problems, []);
});

test("a chain Strata's own daemon holds read-write: the chain view says so, and a bitmap change goes through that daemon", async (t) => {
  const app = await suite.open(t, 'held');
  const { page } = app;
  const top = buildSeed(path.join(app.dataDir, 'seed'));
  await page.getByTestId('welcome-panel').waitFor();
  await addImage(page, top);
  await page.getByTestId('chain-view').waitFor();
  await openInDaemon(page, true);
  await page.getByTestId('nav-workspace').click();
  await page.getByTestId('rescan').click();
  // In use on disk is expected while Strata's daemon runs: the checkpoints are its live states, ok.
  const held = page.getByTestId('chain-held');
  await held.waitFor();
  assert.match(await held.innerText(), /Open read-write in Strata’s own daemon .*top\.qcow2.*as it sees them now, read live/s);
  const cp = (name: string) => page.locator(`[data-testid="checkpoint"][data-name="${name}"]`);
  for (const [name, size] of [['bitmap1', '320 KiB'], ['bitmap2', '256 KiB'], ['bitmap3', '192 KiB']]) {
    assert.equal(await cp(name).getAttribute('data-state'), 'ok', name);
    assert.match(await cp(name).innerText(), new RegExp(size), name);
  }
  assert.equal(await page.locator('[data-testid="checkpoint"] [data-testid="checkpoint-problems"]').count(), 0);
  assert.equal(await page.locator('[data-testid="layer-live"]:not([data-error])').count(), 2, 'both layers read live');
  await app.shot('held-live-checkpoints');
  // Clear on the top's bitmap: through the daemon that holds it (before: a second daemon, a lock error).
  await page.locator('[data-testid="bitmap-actions"][data-name="bitmap3"]').first().click();
  await page.getByTestId('menu-clear').click();
  await page.getByTestId('dialog-apply').waitFor();
  assert.match(await page.getByTestId('bitmap-dialog').innerText(), /Through Strata’s daemon that holds this layer open/);
  // The confirmation says what the clear costs: checkpoints 1 and 2 lose the record of the top's writes.
  const effects = page.getByTestId('plan-checkpoint-effects');
  assert.match(await effects.innerText(), /checkpoints ‘bitmap1’, ‘bitmap2’ can no longer be trusted: the next backup from them must be full/);
  assert.deepEqual(await page.getByTestId('plan-checkpoint-effect').evaluateAll((els) => els.map((e) => [e.getAttribute('data-name'), e.getAttribute('data-after')])), [
    ['bitmap1', 'unknown'],
    ['bitmap2', 'unknown'],
    ['bitmap3', 'ok'],
  ]);
  await app.shot('held-clear-effects');
  await page.getByTestId('dialog-apply').click();
  await page.getByTestId('bitmap-dialog').waitFor({ state: 'detached' });
  // The chain is read again, live: the top's checkpoint now holds nothing, still ok; the older two
  // lost the record of the top's writes (192 KiB allocated there, no bitmap marks it): unknown, not ok.
  await cp('bitmap3').getByTestId('checkpoint-dirty').getByText(/^0 B/).waitFor();
  assert.equal(await cp('bitmap3').getAttribute('data-state'), 'ok');
  for (const name of ['bitmap1', 'bitmap2']) {
    assert.equal(await cp(name).getAttribute('data-state'), 'unknown', name);
    assert.match(await cp(name).getByTestId('checkpoint-problems').innerText(), /top\.qcow2 holds 192 KiB written that no bitmap of checkpoint/);
  }
  await app.shot('held-by-daemon');
  await page.getByTestId('nav-connections').click();
  await page.getByTestId('graph-refresh').click();
  // The daemon's own bitmap is now empty (QEMU's live count).
  await liveChip(page, 'strata-top', 'bitmap3').waitFor();
  assert.match(await liveChip(page, 'strata-top', 'bitmap3').innerText(), /\b0 B\b/);
  assert.deepEqual(app.problems, []);
});

test('a commit that would call an untrusted checkpoint ok is refused in the app, naming it and saying what to do; nothing is journaled', async (t) => {
  const app = await suite.open(t, 'plan-refused');
  const { page } = app;
  // base: X made, written, then disabled; top: X recording. What base took after X was disabled is in
  // no bitmap, and carrying the top's X into it would make it record again and read ok.
  const dir = path.join(app.dataDir, 'refused');
  fs.mkdirSync(dir, { recursive: true });
  const base = path.join(dir, 'base.qcow2');
  const top = path.join(dir, 'top.qcow2');
  qemuImg('create', '-q', '-f', 'qcow2', base, String(8 << 20));
  qemuIo(base, ['write -P 0x41 0 65536']);
  qemuImg('bitmap', '--add', base, 'X');
  qemuIo(base, ['write -P 0x42 65536 65536']);
  qemuImg('bitmap', '--disable', base, 'X');
  qemuImg('create', '-q', '-f', 'qcow2', '-b', 'base.qcow2', '-F', 'qcow2', top);
  qemuImg('bitmap', '--add', top, 'X');

  await page.getByTestId('welcome-panel').waitFor();
  await addImage(page, top);
  await page.getByTestId('chain-view').waitFor();
  await openInDaemon(page, true);
  await page.getByTestId('nav-jobs').click();
  await page.getByTestId('jobs-view').waitFor();
  await page.getByTestId('job-type-plan').check();
  await page.getByTestId('job-start').click();
  const error = page.getByTestId('plan-start-error');
  await error.waitFor();
  const text = await error.innerText();
  assert.match(text, /in .*base\.qcow2 every bitmap covering checkpoint 'X' is disabled/);
  assert.match(text, /the commit would make 'X' record again and read ok/);
  assert.match(text, /strata bitmap remove/);
  assert.equal(await page.getByTestId('start-job-dialog').count(), 0, 'no preview to confirm');
  assert.equal(await page.getByTestId('plan-card').count(), 0, 'nothing journaled');
  await app.shot('plans-refused');
});
