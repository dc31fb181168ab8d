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
import { addImage, e2eSuite } from './e2e-helpers.ts';

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
