// End to end for backups: an image added, a repository folder typed into its Backups tab, a full
// backup (the confirmation says what it copies), more data written, an incremental, both points
// listed with their levels, the incremental restored to a raw file that qemu-img compare finds equal
// to a raw copy of the disk, the full restored with a fresh checkpoint, and Verify saying OK, all of it in History; a running backup cancelled
// from its progress bar; retention planned and applied.
// Screenshots: test-output/screenshots/backups-*.png.
import { test } from 'vitest';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { qemuImg, qemuIo } from '../helpers/qemu.ts';
import { rawCopy } from '../helpers/truth.ts';
import { addImage, backUp, e2eSuite, restoreFromForm } from './e2e-helpers.ts';
import { bitmapNames } from '../backup/helpers.ts';
import { dispatch } from '../../electron/core/dispatch.ts';
import type { Page } from 'playwright-core';

const suite = e2eSuite('strata-e2e-backups-');

/** The points on the Backups timeline, oldest first: `attr` of each (data-level, data-id, data-verified…). */
const pointsBy = (page: Page, attr: string) => page.getByTestId('backup-point').evaluateAll((els, a) => els.map((e) => e.getAttribute(a)), attr);

/** A fresh app with a new disk of `size` (written by `writes`) in the workspace, its Backups tab on an empty repository. */
async function backupsTab(t: Parameters<typeof suite.open>[0], name: string, size: string, writes: string[]) {
  const app = await suite.open(t, name);
  const { page } = app;
  const dir = path.join(app.dataDir, 'disk');
  fs.mkdirSync(dir, { recursive: true });
  const disk = path.join(dir, 'disk.qcow2');
  const repo = path.join(app.dataDir, 'repo');
  qemuImg('create', '-q', '-f', 'qcow2', disk, size);
  qemuIo(disk, writes);
  await page.getByTestId('welcome-panel').waitFor();
  await addImage(page, disk);
  await page.getByTestId('chain-view').waitFor();
  await page.getByTestId('tab-backups').click();
  await page.getByTestId('backups-view').waitFor();
  await page.getByTestId('backup-repo').fill(repo);
  await page.getByTestId('backup-repo-use').click();
  await page.getByTestId('backup-empty').waitFor();
  return { app, page, dir, disk, repo };
}

test('back up full and incremental from the Backups tab, restore the incremental, verify', async (t) => {
  const { app, page, dir, disk } = await backupsTab(t, 'backups', '4M', ['write -P 0x41 0 512k', 'write -P 0x42 2M 256k']);

  const fullSays = await backUp(page, 'full');
  assert.match(fullSays, /full backup/);
  assert.match(fullSays, /768 KiB/);
  await page.locator('[data-testid="backup-point"][data-level="full"]').waitFor();
  await app.shot('backups-full');

  qemuIo(disk, ['write -P 0x43 1M 128k', 'write -P 0x44 256k 64k']);
  await page.getByTestId('backup-level').selectOption('inc');
  await page.getByTestId('backup-take').click();
  await page.getByTestId('backup-dialog').waitFor();
  // Where the incremental's data lies, before it runs: the full's checkpoint bitmap, marked exactly
  // on the buckets the two writes touched.
  const strip = page.locator('[data-testid="backup-copies-track"][data-state="ready"]');
  await strip.waitFor();
  const bitmaps = bitmapNames(disk);
  assert.equal(bitmaps.length, 1, 'the full left one checkpoint');
  assert.equal(await strip.getAttribute('data-lanes'), `${bitmaps[0].replace(/^disk\.qcow2:/, '')} in disk.qcow2`);
  const marked = (await strip.getAttribute('data-marked'))!;
  const bucket = Math.ceil((4 << 20) / marked.length);
  const written = [[256 << 10, 64 << 10], [1 << 20, 128 << 10]];
  const expected = [...marked].map((_, i) => (written.some(([at, len]) => i * bucket < at + len && at < (i + 1) * bucket) ? '1' : '-')).join('');
  assert.equal(marked, expected);
  await app.shot('backups-confirm-inc');
  const incSays = await page.getByTestId('backup-dialog').innerText();
  assert.match(incSays, /inc backup of the changes since checkpoint/);
  assert.match(incSays, /192 KiB/);
  await page.getByTestId('confirm-yes').click();
  await page.locator('[data-testid="backup-point"][data-level="inc"]').waitFor({ timeout: 60_000 });

  const rows = page.getByTestId('backup-point');
  assert.equal(await rows.count(), 2);
  assert.deepEqual(await pointsBy(page, 'data-level'), ['full', 'inc']);
  const incId = await rows.nth(1).getAttribute('data-id');
  assert.ok(incId);

  // Restore the incremental to a raw file: the disk as it is now.
  const truth = rawCopy(disk, path.join(dir, 'now.raw'));
  const to = path.join(dir, 'restored.raw');
  await rows.nth(1).click();
  await page.locator('[data-testid="backup-point-details"]').and(page.locator(`[data-id="${incId}"]`)).waitFor();
  await page.getByTestId('backup-restore').click();
  await page.getByTestId('backup-restore-form').waitFor();
  await restoreFromForm(page, to, 'raw');
  assert.ok(fs.existsSync(to));
  qemuImg('compare', '-q', '-f', 'raw', '-F', 'raw', truth, to);
  await app.shot('backups-restored');

  // Restore the full as qcow2 with a fresh checkpoint: the option is offered for qcow2 only.
  const withCp = path.join(dir, 'restored-full.qcow2');
  const fullId = await rows.nth(0).getAttribute('data-id');
  await rows.nth(0).click();
  await page.locator('[data-testid="backup-point-details"]').and(page.locator(`[data-id="${fullId}"]`)).waitFor();
  await page.getByTestId('backup-restore').click();
  await page.getByTestId('backup-restore-form').waitFor();
  await page.getByTestId('backup-restore-format').selectOption('raw');
  assert.equal(await page.getByTestId('backup-restore-checkpoint').isDisabled(), true, 'no checkpoint in a raw file');
  await page.getByTestId('backup-restore-format').selectOption('qcow2');
  await page.getByTestId('backup-restore-to').fill(withCp);
  await page.getByTestId('backup-restore-checkpoint').check();
  await page.getByTestId('backup-restore-go').click();
  await page.getByTestId('backup-restore-dialog').waitFor();
  assert.match(await page.getByTestId('backup-restore-dialog').innerText(), /gets the checkpoint bitmap strata-full-1-/);
  await app.shot('backups-confirm-restore-checkpoint');
  await page.getByTestId('confirm-yes').click();
  await page.getByTestId('backup-restored-checkpoint').waitFor({ timeout: 60_000 });
  const cp = await page.getByTestId('backup-restored-checkpoint').innerText();
  assert.match(cp, /^strata-full-1-/);
  assert.deepEqual(bitmapNames(withCp), [`restored-full.qcow2:${cp}`]);
  // The point's details say where it was restored to with that checkpoint (the catalog's mirror of the manifest).
  const restoredDisk = page.locator(`[data-testid="backup-point-details"][data-id="${fullId}"] [data-testid="backup-point-restored-disk"]`);
  await restoredDisk.waitFor();
  assert.equal(await restoredDisk.getAttribute('data-image'), withCp);
  assert.match(await restoredDisk.innerText(), new RegExp(`^to .*restored-full\\.qcow2 at .+ with checkpoint ${cp}: its next backup here is incremental to ${fullId}$`));
  await app.shot('backups-restored-checkpoint');

  await page.getByTestId('backup-verify').click();
  const verdict = page.getByTestId('backup-verify-result');
  await verdict.waitFor({ timeout: 60_000 });
  assert.equal(await verdict.getAttribute('data-ok'), 'true');
  assert.match(await verdict.innerText(), /^OK: 2 points checked/);
  await page.locator('[data-testid="backup-point"][data-verified="ok"]').nth(1).waitFor();
  assert.deepEqual(await pointsBy(page, 'data-verified'), ['ok', 'ok']);
  await app.shot('backups-verified');

  // The chain view: each checkpoint says which backup it belongs to.
  await page.getByTestId('tab-chain').click();
  const markers = page.getByTestId('checkpoint-backup');
  await markers.nth(1).waitFor();
  assert.deepEqual(await markers.allInnerTexts(), ['backup 1 · full · just now', `backup 2 · inc · just now`]);
  assert.deepEqual(await page.locator('[data-testid="checkpoint"]:has([data-testid="checkpoint-backup"])').evaluateAll((els) => els.map((e) => e.getAttribute('data-name')!.replace(/-[a-z0-9]+$/, ''))), ['strata-full-1', `strata-${incId}`]);
  await app.shot('backups-chain-markers');

  // History: both backups, the restore and the verify, newest first; the restore's details.
  await page.getByTestId('nav-history').click();
  await page.getByTestId('activity-kind-backup').click();
  const items = page.locator('[data-testid="activity-item"][data-kind="backup"]');
  await items.first().waitFor();
  assert.deepEqual(await items.locator('.av__title').allInnerTexts(), ['Verify 2 points', 'Restore full-1', `Restore ${incId}`, `Backup ${incId} (inc)`, 'Backup full-1 (full)']);
  await items.nth(2).locator('button').click();
  assert.equal(await page.getByTestId('activity-backup-title').innerText(), incId);
  const detail = await page.getByTestId('activity-detail').innerText();
  assert.match(detail, new RegExp(`Restored to\\s+${to.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}`));
  assert.match(detail, /raw/);
  await app.shot('backups-history-restore');
  assert.deepEqual(app.problems, []);
});

test('cancel a running backup from its progress bar: not listed, no partial file, no new checkpoint', async (t) => {
  const { app, page, disk, repo } = await backupsTab(t, 'backups-cancel', '128M', ['write -P 0x51 0 1M']);
  await backUp(page, 'full');
  await page.locator('[data-testid="backup-point"][data-level="full"]').waitFor();
  const bitmapsBefore = bitmapNames(disk);
  const manifestBefore = fs.readFileSync(path.join(repo, 'strata-backups.json'), 'utf8');

  // 64 MiB at 8 MiB/s: about 8 s, time to watch it run and cancel it.
  qemuIo(disk, ['write -P 0x52 4M 64M']);
  await page.getByTestId('backup-speed').fill('8');
  await page.getByTestId('backup-level').selectOption('inc');
  await page.getByTestId('backup-take').click();
  await page.getByTestId('backup-dialog').waitFor();
  await page.getByTestId('confirm-yes').click();
  const bar = page.locator('[data-testid="backup-progress"] [role="progressbar"]');
  await page.waitForFunction(() => Number(document.querySelector('[data-testid="backup-progress"] [role="progressbar"]')?.getAttribute('aria-valuenow') ?? 0) >= 5, null, { timeout: 30_000 });
  const percentAtCancel = Number(await bar.getAttribute('aria-valuenow'));
  assert.ok(percentAtCancel < 100, `still running (${percentAtCancel}%)`);
  assert.deepEqual(fs.readdirSync(repo).filter((n) => n.startsWith('.partial-')), ['.partial-inc-2.qcow2'], 'its partial file exists while it runs');
  await app.shot('backups-cancel-running');
  await page.getByTestId('backup-cancel').click();

  const said = page.getByTestId('backup-cancelled');
  await said.waitFor({ timeout: 30_000 });
  assert.equal(await said.getAttribute('data-id'), 'inc-2');
  assert.match(await said.innerText(), /was cancelled: it is not a backup point/);
  assert.match(await said.innerText(), /removed .*\.partial-inc-2\.qcow2/);
  assert.match(await said.innerText(), /removed checkpoint bitmap 'strata-inc-2-/);
  await page.getByTestId('backup-progress').waitFor({ state: 'detached' });
  assert.equal(await page.getByTestId('backup-error').count(), 0, 'a cancel is not shown as an error');
  assert.deepEqual(await pointsBy(page, 'data-level'), ['full']);
  // The timeline shows the cancelled backup as what it is: not a point.
  const attempt = page.getByTestId('backup-attempt');
  await attempt.waitFor();
  assert.deepEqual([await attempt.getAttribute('data-id'), await attempt.getAttribute('data-state')], ['inc-2', 'cancelled']);
  assert.deepEqual(fs.readdirSync(repo).filter((n) => n.startsWith('.')), [], 'no partial file left');
  assert.equal(fs.readFileSync(path.join(repo, 'strata-backups.json'), 'utf8'), manifestBefore, 'the manifest is unchanged');
  assert.deepEqual(bitmapNames(disk), bitmapsBefore, 'no new checkpoint bitmap in the disk');
  await app.shot('backups-cancelled');
  assert.deepEqual(app.problems, []);
});

test('retention: keep last 1 plans which points go and what every remaining one is restored from; applied after confirmation; all in History', async (t) => {
  const { app, page, disk, repo } = await backupsTab(t, 'backups-prune', '8M', ['write -P 0x61 0 256k']);
  // Four points, taken through the core the view talks to: full-1, inc-2, diff-3 (to full-1), inc-4.
  for (const [write, level] of [[null, 'full'], ['write -P 0x62 1M 64k', 'inc'], ['write -P 0x63 2M 64k', 'diff'], ['write -P 0x64 3M 64k', 'inc']] as const) {
    if (write) qemuIo(disk, [write]);
    const r = await dispatch(app.service, 'backup:take', { image: disk, repo, level });
    assert.ok(r.ok, r.ok ? '' : r.error.message);
  }
  await page.locator('button[title="Read the repository again"]').click();
  await page.locator('[data-testid="backup-point"][data-id="inc-4"]').waitFor();

  await page.getByTestId('backup-keepLast').fill('1');
  await page.getByTestId('backup-keepDaily').fill('0');
  await page.getByTestId('backup-keepWeekly').fill('0');
  await page.getByTestId('backup-prune-plan').click();
  const plan = page.getByTestId('backup-prune-result');
  await plan.waitFor();
  assert.equal(await plan.getAttribute('data-remove'), 'inc-2,diff-3');
  const rows = page.getByTestId('prune-row');
  assert.deepEqual(await rows.evaluateAll((els) => els.map((e) => `${e.getAttribute('data-id')}:${e.getAttribute('data-plan')}`)), ['full-1:keep', 'inc-2:remove', 'diff-3:remove', 'inc-4:keep']);
  // diff-3 only carries inc-4: merged into it, inc-4 then builds on full-1.
  assert.match(await page.getByTestId('prune-row-merged').innerText(), /^merged into inc-4/);
  assert.deepEqual(await page.getByTestId('prune-row-from').allInnerTexts(), ['restored from full-1', 'restored from inc-4 ← full-1']);
  assert.match(await page.getByTestId('backup-prune-summary').innerText(), /^2 points go, 2 stay/);
  assert.ok(fs.existsSync(path.join(repo, 'inc-2.qcow2')), 'a plan removes nothing');
  // The timeline marks the same plan on the points.
  assert.deepEqual(await pointsBy(page, 'data-prune'), ['keep', 'remove', 'remove', 'keep']);
  assert.deepEqual(await page.getByTestId('timeline-prune').allInnerTexts(), ['stays', 'goes', 'goes', 'stays']);
  await plan.scrollIntoViewIfNeeded();
  await app.shot('backups-prune-plan');

  await page.getByTestId('backup-prune-apply').click();
  const dialog = page.getByTestId('backup-prune-dialog');
  await dialog.waitFor();
  assert.match(await dialog.innerText(), /inc-2, diff-3 are removed from the manifest/);
  assert.match(await page.getByTestId('backup-prune-merge').innerText(), /diff-3 is merged into inc-4 first, which then builds on full-1/);
  await page.getByTestId('confirm-yes').click();
  await page.getByTestId('backup-pruned').waitFor({ timeout: 30_000 });
  assert.deepEqual(await pointsBy(page, 'data-id'), ['full-1', 'inc-4']);
  assert.ok(!fs.existsSync(path.join(repo, 'inc-2.qcow2')));
  await app.shot('backups-pruned');

  // History: the four backups and the prune, each with its details.
  await page.getByTestId('nav-history').click();
  await page.getByTestId('activity-view').waitFor();
  await page.getByTestId('activity-kind-backup').click();
  const items = page.locator('[data-testid="activity-item"][data-kind="backup"]');
  await items.first().waitFor();
  const titles = await items.locator('.av__title').allInnerTexts();
  assert.deepEqual(titles, ['Prune: remove inc-2, diff-3', 'Backup inc-4 (inc)', 'Backup diff-3 (diff)', 'Backup inc-2 (inc)', 'Backup full-1 (full)']);
  await items.first().locator('button').click();
  assert.equal(await page.getByTestId('activity-backup-title').innerText(), 'Prune');
  assert.deepEqual(await page.getByTestId('activity-backup-point').evaluateAll((els) => els.map((e) => `${e.getAttribute('data-id')}:${e.getAttribute('data-what')}`)), ['full-1:kept', 'inc-4:kept', 'inc-2:removed', 'diff-3:removed']);
  await app.shot('backups-history-prune');
  assert.deepEqual(app.problems, []);
});
