// End to end for repair: a chain broken by an overlay made outside Strata (qemu-img create -b, then
// writes, no bitmaps) shows the finding, the before/after drawing and the exact commands; Repair,
// confirmed, gives a healthy chain whose checkpoints cover every write (checked against raw copies).
// Screenshots: test-output/screenshots/repair-*.png.
import { test } from 'vitest';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { qemuImg, qemuIo } from '../helpers/qemu.ts';
import { rawCopy, differingBlocks, sinceOf, missedBytes } from '../helpers/truth.ts';
import { addImage, backUp, e2eSuite } from './e2e-helpers.ts';

const suite = e2eSuite('strata-e2e-repair-');

test('an untracked overlay: the finding, the preview, Repair, and then a healthy chain', async (t) => {
  const app = await suite.open(t, 'repair');
  const { page } = app;
  const dir = path.join(app.dataDir, 'chain');
  fs.mkdirSync(dir, { recursive: true });
  const base = path.join(dir, 'base.qcow2');
  const top = path.join(dir, 'top.qcow2');
  qemuImg('create', '-q', '-f', 'qcow2', base, '512K');
  qemuIo(base, ['write -P 0x41 0 128k']);
  qemuImg('bitmap', '--add', base, 'monday');
  const atMonday = rawCopy(base, path.join(dir, 'at-monday.raw'));
  qemuIo(base, ['write -P 0x42 128k 64k']);
  // Someone makes an overlay outside Strata and the VM writes into it.
  qemuImg('create', '-q', '-f', 'qcow2', '-b', 'base.qcow2', '-F', 'qcow2', top);
  qemuIo(top, ['write -P 0x44 320k 128k']);

  await page.getByTestId('welcome-panel').waitFor();
  await addImage(page, top);
  await page.getByTestId('chain-view').waitFor();
  const panel = page.getByTestId('repair-panel');
  await panel.waitFor();
  const finding = panel.locator('[data-testid="repair-finding"][data-code="untracked-overlay"]');
  await finding.waitFor();
  assert.equal(await finding.getAttribute('data-repairable'), 'true');
  assert.equal(await page.locator('[data-testid="checkpoint"][data-name="monday"]').getAttribute('data-state'), 'unknown');
  // Before: unknown; after: the base's marks plus the overlay's allocation, in the seed's style.
  const view = panel.locator('[data-testid="repair-view"][data-name="monday"]');
  assert.equal((await view.getByTestId('repair-before').innerText()).trim(), 'unknown');
  assert.match(await view.getByTestId('repair-after').innerText(), /^--1--11-\s*192 KiB$/);
  await panel.getByTestId('repair-steps').locator('summary').click();
  assert.ok((await panel.getByTestId('repair-command').allInnerTexts()).some((c) => /^qemu-img bitmap /.test(c)));
  await app.shot('repair-preview');

  await panel.getByTestId('repair-apply').click();
  await page.getByTestId('repair-dialog').waitFor();
  await page.getByTestId('confirm-yes').click();
  // The chain is read again: the checkpoint is known and the panel has nothing left to show.
  await page.locator('[data-testid="checkpoint"][data-name="monday"][data-state="ok"]').waitFor({ timeout: 30_000 });
  await panel.waitFor({ state: 'detached', timeout: 30_000 });
  await app.shot('repair-healthy');

  // The truth: every block changed since monday is marked, and later writes are tracked.
  const changed = differingBlocks(atMonday, rawCopy(top, path.join(dir, 'now.raw')));
  assert.equal(missedBytes(changed, sinceOf(top, 'monday').extents), 0);
  qemuIo(top, ['write -P 0x45 0 64k']);
  const later = differingBlocks(atMonday, rawCopy(top, path.join(dir, 'later.raw')));
  assert.equal(missedBytes(later, sinceOf(top, 'monday').extents), 0);
  assert.deepEqual(app.problems, []);
});

test("a backup repository's checkpoint removed outside Strata: the card says the next backup is full, and opens the repository to take it", async (t) => {
  const app = await suite.open(t, 'repair-backup');
  const { page } = app;
  const dir = path.join(app.dataDir, 'disk');
  fs.mkdirSync(dir, { recursive: true });
  const img = path.join(dir, 'vm.qcow2');
  const repo = path.join(app.dataDir, 'nightly');
  qemuImg('create', '-q', '-f', 'qcow2', img, '1M');
  qemuIo(img, ['write -P 0x41 0 128k']);

  await page.getByTestId('welcome-panel').waitFor();
  await addImage(page, img);
  await page.getByTestId('chain-view').waitFor();
  // The first backup into the repository, from the app: full, with a checkpoint in the image.
  await page.getByTestId('tab-backups').click();
  await page.getByTestId('backup-repo').fill(repo);
  await page.getByTestId('backup-repo-use').click();
  assert.match(await backUp(page, 'auto'), /full/i);
  const bitmaps = () => (JSON.parse(qemuImg('info', '--output=json', img))['format-specific'].data.bitmaps ?? []).map((b: any) => b.name);
  const [cp] = bitmaps();
  assert.ok(cp, 'the backup left its checkpoint in the image');

  // Someone removes that checkpoint outside Strata.
  qemuImg('bitmap', '--remove', img, cp);
  await page.getByTestId('tab-chain').click();
  await page.getByTestId('rescan').click();
  const panel = page.getByTestId('repair-panel');
  const card = panel.locator('[data-testid="repair-finding"][data-code="backup-checkpoint-missing"]');
  await card.waitFor();
  assert.equal(await card.getAttribute('data-repairable'), 'false');
  const says = await card.innerText();
  assert.match(says, /cannot be repaired/);
  assert.ok(says.includes(repo), says);
  assert.match(says, new RegExp(`expects checkpoint '${cp}'.*the chain no longer has checkpoint '${cp}'`));
  assert.match(says, /next backup into .* will be full/);
  assert.match(await card.getByTestId('repair-finding-todo').innerText(), /take that full backup now/);
  // nothing in the chain can bring it back: no plan, no Repair button
  assert.equal(await panel.getByTestId('repair-apply').count(), 0);
  await app.shot('repair-backup-checkpoint-missing');

  // What the user can do: the repository opens in the Backups tab, and its next backup is full.
  await card.getByTestId('repair-open-backups').click();
  await page.getByTestId('backup-level').waitFor();
  assert.equal(await page.getByTestId('backup-repo').inputValue(), repo);
  assert.match(await backUp(page, 'auto'), /full/i);
  assert.equal(bitmaps().length, 1, 'a new checkpoint for the repository');
  await page.getByTestId('tab-chain').click();
  await page.getByTestId('rescan').click();
  await page.getByTestId('chain-view').waitFor();
  await panel.waitFor({ state: 'detached', timeout: 30_000 });
  assert.deepEqual(app.problems, []);
});
