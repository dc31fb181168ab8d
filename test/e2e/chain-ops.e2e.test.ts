// End to end for the chain operations that keep the checkpoints, on the seed's chain: Stream… (the
// base's data pulled into the top, bitmap1 and bitmap2 carried into it) and Snapshot… (a new top with
// the recording bitmaps and a new checkpoint), each previewed with "changes since" before and after
// and the exact commands, applied behind a confirmation; and refused while Strata's daemon holds the
// chain. Screenshots: test-output/screenshots/chain-op-*.png.
import { test } from 'vitest';
import assert from 'node:assert/strict';
import path from 'node:path';
import { qemuInfoChain } from '../helpers/qemu.ts';
import { sinceOf } from '../helpers/truth.ts';
import { addImage, buildSeed, e2eSuite, openInDaemon } from './e2e-helpers.ts';

const suite = e2eSuite('strata-e2e-chain-ops-');
const K = 1024;

test('stream then snapshot on the seed chain: previews, confirmations, and every checkpoint kept', async (t) => {
  const app = await suite.open(t, 'ops');
  const { page } = app;
  const top = buildSeed(path.join(app.dataDir, 'seed'));
  await page.getByTestId('welcome-panel').waitFor();
  await addImage(page, top);
  await page.getByTestId('chain-view').waitFor();
  const ops = page.getByTestId('chain-ops');
  const cp = (name: string) => page.locator(`[data-testid="checkpoint"][data-name="${name}"]`);

  // ----- Stream: the preview carries the base's checkpoints and changes no drawing.
  await ops.getByTestId('chain-op-stream').click();
  await ops.getByTestId('chain-op-preview').click();
  await ops.getByTestId('chain-op-summary').waitFor();
  assert.deepEqual(await ops.getByTestId('chain-op-carried').evaluateAll((els) => els.map((e) => [e.getAttribute('data-name'), e.textContent?.replace(/\s+/g, ' ').trim()])), [
    ['bitmap1', 'bitmap1 created from base.qcow2'],
    ['bitmap2', 'bitmap2 created from base.qcow2'],
  ]);
  for (const [name, drawing] of [['bitmap1', '--11111-'], ['bitmap2', '---1111-'], ['bitmap3', '---1-11-']]) {
    const row = ops.locator(`[data-testid="chain-op-view"][data-name="${name}"]`);
    assert.match(await row.getByTestId('chain-op-before').innerText(), new RegExp(`^${drawing}`), name);
    assert.match(await row.getByTestId('chain-op-after').innerText(), new RegExp(`^${drawing}`), name);
  }
  await ops.getByTestId('chain-op-steps').locator('summary').click();
  const commands = await ops.getByTestId('chain-op-command').allInnerTexts();
  assert.ok(commands.some((c) => /^qemu-img rebase -f qcow2 -b '' /.test(c)), commands.join('\n'));
  await app.shot('chain-op-stream-preview');
  await ops.getByTestId('chain-op-apply').click();
  await page.getByTestId('chain-op-dialog').waitFor();
  await page.getByTestId('confirm-yes').click();
  await page.getByTestId('toast').filter({ hasText: 'Streamed into top.qcow2, every checkpoint kept' }).waitFor({ timeout: 30_000 });
  await page.locator('[data-testid="layer-card"]').nth(1).waitFor({ state: 'detached' });
  assert.deepEqual(qemuInfoChain(top).map((l: any) => l.filename), [top]);
  for (const [name, size] of [['bitmap1', '320 KiB'], ['bitmap2', '256 KiB'], ['bitmap3', '192 KiB']]) {
    assert.equal(await cp(name).getAttribute('data-state'), 'ok', name);
    assert.match(await cp(name).innerText(), new RegExp(size), name);
  }
  await app.shot('chain-op-streamed');

  // ----- Snapshot with a new checkpoint: the new top joins the workspace and is shown.
  await ops.getByTestId('chain-op-snapshot').click();
  const newTop = path.join(path.dirname(top), 'top-snap.qcow2');
  assert.equal(await ops.getByTestId('chain-op-new-top').inputValue(), newTop);
  await ops.getByTestId('chain-op-checkpoint').fill('snap1');
  await ops.getByTestId('chain-op-preview').click();
  await ops.getByTestId('chain-op-summary').waitFor();
  assert.deepEqual(await ops.getByTestId('chain-op-carried').evaluateAll((els) => els.map((e) => e.getAttribute('data-name'))), ['bitmap2', 'bitmap3', 'snap1']);
  await app.shot('chain-op-snapshot-preview');
  await ops.getByTestId('chain-op-apply').click();
  await page.getByTestId('confirm-yes').click();
  await page.getByTestId('toast').filter({ hasText: 'top-snap.qcow2 is the active image now' }).waitFor({ timeout: 30_000 });
  await page.locator(`[data-testid="layer-card"][data-path="${newTop}"]`).waitFor();
  await page.getByTestId('workspace-item').filter({ hasText: 'top-snap.qcow2' }).filter({ hasText: /2 layers · scanned/ }).waitFor();
  await cp('snap1').waitFor();
  assert.deepEqual(await page.locator('[data-testid="checkpoint"]').evaluateAll((els) => els.map((e) => [e.getAttribute('data-name'), e.getAttribute('data-state')])), [
    ['bitmap1', 'ok'],
    ['bitmap2', 'ok'],
    ['bitmap3', 'ok'],
    ['snap1', 'ok'],
  ]);
  const since1 = sinceOf(newTop, 'bitmap1');
  assert.equal(since1.state, 'ok');
  assert.equal(since1.extents.reduce((n, e) => n + e.length, 0), 320 * K);
  await app.shot('chain-op-snapshotted');

  // ----- Held by Strata's daemon: refused, saying what to do.
  await openInDaemon(page, true);
  await page.getByTestId('nav-workspace').click();
  await ops.getByTestId('chain-op-stream').click();
  await ops.getByTestId('chain-op-preview').click();
  const refused = ops.getByTestId('chain-op-refused');
  await refused.waitFor();
  assert.match(await refused.innerText(), /open in Strata’s daemon .*close that connection first/);
  assert.equal(await ops.getByTestId('chain-op-apply').count(), 0);
  await app.shot('chain-op-refused-held');
  assert.deepEqual(app.problems, []);
});
