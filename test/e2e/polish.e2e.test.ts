// Dead ends and polish a new user met (issue 6, items 6 and 7), in Chromium against browser mode:
// a missing backing file shows what can be read and can be located, a truncated image says what to
// do, the sidebar keeps and updates what it knows, plain words before codes, bitmap order and long
// names, and nothing covers the checkpoint list.
import { test } from 'vitest';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { addImage, buildSeed, e2eSuite } from './e2e-helpers.ts';

const suite = e2eSuite('strata-e2e-polish-');

test('a missing backing file: the top layer and its bitmaps are shown, the file is named, Locate… checks a file and rebases only on the click', async (t) => {
  const app = await suite.open(t, 'missing');
  const { page } = app;
  const top = buildSeed(path.join(app.dataDir, 'vm'));
  const expected = path.join(app.dataDir, 'vm', 'base.qcow2');
  const moved = path.join(app.dataDir, 'moved', 'base-renamed.qcow2');
  fs.mkdirSync(path.dirname(moved));
  fs.renameSync(expected, moved);
  const topBytes = fs.readFileSync(top);

  await addImage(page, top);
  await page.getByTestId('chain-view').waitFor();
  assert.equal(await page.getByTestId('layer-card').count(), 1);
  await page.locator('[data-testid="bitmap-chip"][data-name="bitmap3"]').waitFor();
  const panel = page.getByTestId('missing-backing');
  assert.equal(await panel.getAttribute('data-expected'), expected);
  assert.equal(await page.getByTestId('missing-backing-path').innerText(), expected);
  assert.match(await panel.innerText(), /top\.qcow2 names base\.qcow2 as its backing file/);
  // never a false clean: every checkpoint the top knows of is unknown, and says why
  const states = await page.$$eval('[data-testid="checkpoint"]', (els) => els.map((e) => [e.getAttribute('data-name'), e.getAttribute('data-state')]));
  assert.ok(states.length > 0);
  assert.deepEqual(states, states.map(([n]) => [n, 'unknown']));
  assert.match(await page.locator('[data-testid="checkpoint-problems"]').first().innerText(), /chain is incomplete/);
  await app.shot('polish-01-missing-backing');

  await page.getByTestId('locate-backing').click();
  const dialog = page.getByTestId('locate-dialog');
  await page.getByTestId('locate-path').fill(path.join(app.dataDir, 'nope.qcow2'));
  await page.getByTestId('locate-check').click();
  await dialog.locator('[data-testid="locate-result"][data-plausible="false"]').waitFor();
  assert.match(await page.getByTestId('locate-problems').innerText(), /does not exist/);
  assert.equal(await page.getByTestId('locate-rebase').count(), 0, 'no write offered for a wrong file');

  await page.getByTestId('locate-path').fill(moved);
  await page.getByTestId('locate-check').click();
  await dialog.locator('[data-testid="locate-result"][data-plausible="true"]').waitFor();
  assert.equal(await page.getByTestId('locate-command').innerText(), `qemu-img rebase -u -f qcow2 -b ${moved} -F qcow2 ${top}`);
  assert.match(await page.getByTestId('locate-write-warning').innerText(), /write to your image/);
  await app.shot('polish-02-locate-checked');
  assert.deepEqual(fs.readFileSync(top), topBytes, 'checking wrote nothing');

  await page.getByTestId('locate-rebase').click();
  await dialog.waitFor({ state: 'detached' });
  await page.locator('[data-testid="layer-card"]').nth(1).waitFor();
  assert.equal(await page.getByTestId('missing-backing').count(), 0);
  await page.locator('[data-testid="checkpoint"][data-name="bitmap1"][data-state="ok"]').waitFor();
  const after = await page.$$eval('[data-testid="checkpoint"]', (els) => els.map((e) => e.getAttribute('data-state')));
  assert.deepEqual(after, ['ok', 'ok', 'ok']);
  await app.shot('polish-03-located');
  assert.deepEqual(app.problems, []);
});

test('a truncated qcow2: the notice names file and offset and says what the user can do', async (t) => {
  const app = await suite.open(t, 'truncated');
  const { page } = app;
  const top = buildSeed(path.join(app.dataDir, 'vm'));
  fs.truncateSync(top, 3 * 65536 + 100);
  await addImage(page, top);
  const notice = page.locator('[data-testid="error-notice"][data-code="E_CORRUPT"]');
  await notice.waitFor();
  const text = await notice.innerText();
  assert.ok(text.includes(top), text);
  assert.match(text, /offset \d+/);
  assert.match(text, /cut off .*restore it from a backup, or recover what is readable with `qemu-img convert`/s);
  await app.shot('polish-04-truncated');
  assert.deepEqual(app.problems, []);
});
