// Dead ends and polish a new user met (issue 6, items 6 and 7), in Chromium against browser mode:
// a missing backing file shows what can be read and can be located, a truncated image says what to
// do, the sidebar keeps and updates what it knows, plain words before codes, bitmap order and long
// names, and nothing covers the checkpoint list.
import { test } from 'vitest';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { addImage, buildSeed, e2eSuite, openInDaemon, shots, staticDir } from './e2e-helpers.ts';
import { qemuImg } from '../helpers/qemu.ts';
import { createService } from '../../electron/core/service.ts';
import { startBrowserServer } from '../../electron/core/server/browser-server.ts';

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
  assert.match(await notice.getByTestId('error-advice').innerText(), /^What you can do: The file is shorter than its tables say/);
  await app.shot('polish-04-truncated');
  assert.deepEqual(app.problems, []);
});

test('sidebar: Rescan updates "scanned … ago"; after a restart entries keep their layer count and a health marker that says why', async (t) => {
  const app = await suite.open(t, 'sidebar');
  const { page } = app;
  const top = buildSeed(path.join(app.dataDir, 'vm'));
  const over = path.join(app.dataDir, 'vm', 'over.qcow2');
  qemuImg('create', '-q', '-f', 'qcow2', '-b', top, '-F', 'qcow2', over);
  await addImage(page, top);
  await page.getByTestId('chain-view').waitFor();
  await addImage(page, over);
  await page.locator('[data-testid="layer-card"]').nth(2).waitFor();
  const item = (p: string) => page.locator(`[data-testid="workspace-item"][data-path="${p}"]`);
  assert.equal(await item(top).getByTestId('workspace-health').getAttribute('data-health'), 'ok');
  assert.equal(await item(over).getByTestId('workspace-health').getAttribute('data-health'), 'unknown');
  assert.match((await item(over).getByTestId('workspace-health').getAttribute('title'))!, /Some checkpoints cannot be vouched for: 3 of 3 checkpoints unknown/);

  const before = await item(over).getByTestId('workspace-scanned').getAttribute('data-at');
  await new Promise((r) => setTimeout(r, 1100));
  await page.getByTestId('rescan').click();
  await page.waitForFunction(
    ([p, b]) => document.querySelector(`[data-testid="workspace-item"][data-path="${p}"] [data-testid="workspace-scanned"]`)?.getAttribute('data-at') !== b,
    [over, before],
  );
  assert.match(await item(over).getByTestId('workspace-scanned').innerText(), /scanned just now/);

  // A restart: a new core on the same data folder, a fresh page. The selected image is read again;
  // the other entry shows what the history kept of its last scan.
  const service = createService({ dataDir: app.dataDir, mode: 'browser' });
  const server = await startBrowserServer({ service, staticDir });
  const page2 = await page.context().newPage();
  t.onTestFinished(async () => {
    await page2.close();
    await server.close();
    await service.close();
  });
  await page2.goto(server.url);
  await page2.getByTestId('chain-view').waitFor();
  const selected = await page2.locator('[data-testid="workspace-item"].ws-item--selected').getAttribute('data-path');
  const other = selected === top ? over : top;
  const entry = page2.locator(`[data-testid="workspace-item"][data-path="${other}"]`);
  assert.equal(await entry.getByTestId('workspace-layers').innerText(), other === over ? '3 layers' : '2 layers');
  assert.equal(await entry.getByTestId('workspace-health').getAttribute('data-health'), other === over ? 'unknown' : 'ok');
  await page2.screenshot({ path: path.join(shots, 'polish-05-sidebar-after-restart.png') });
  assert.deepEqual(app.problems, []);
});

test('plain words first: error headline without the code; block nodes by file, node name second, auto names hidden; bitmaps in creation order', async (t) => {
  const app = await suite.open(t, 'words');
  const { page } = app;
  await addImage(page, path.join(app.dataDir, 'nope.qcow2'));
  const notice = page.locator('[data-testid="error-notice"][data-code="E_NOT_FOUND"]');
  await notice.waitFor();
  assert.equal(await notice.getByTestId('error-title').innerText(), 'File not found');
  assert.equal(await notice.getByTestId('error-code').innerText(), 'E_NOT_FOUND');
  await app.shot('polish-06-error-headline');

  const top = buildSeed(path.join(app.dataDir, 'vm'));
  // created in this order, in separate sessions: creation order is not alphabetical
  qemuImg('bitmap', '--add', top, 'zeta');
  qemuImg('bitmap', '--add', top, 'alpha');
  await page.getByTestId('add-image-path').fill('');
  await addImage(page, top);
  await page.getByTestId('chain-view').waitFor();
  const chainOrder = await page.$$eval(`[data-testid="layer-card"][data-path="${top}"] [data-testid="bitmap-chip"]`, (els) => els.map((e) => e.getAttribute('data-name')));
  assert.deepEqual(chainOrder, ['bitmap3', 'zeta', 'alpha']);
  const widthWorkspace = (await page.getByTestId('side-pane').boundingBox())!.width;

  await openInDaemon(page, false);
  const graphOrder = await page.$$eval('[data-testid="live-bitmap-chip"][data-node="strata-top"]', (els) => els.map((e) => e.getAttribute('data-name')));
  assert.deepEqual(graphOrder, chainOrder, 'the block graph lists them as the chain view does');
  const node = page.locator('[data-testid="block-node"][data-name="strata-top"]');
  assert.equal(await node.getByTestId('block-node-file').innerText(), 'top.qcow2');
  assert.equal(await node.getByTestId('block-node-name').innerText(), 'node strata-top');
  const graphText = await page.getByTestId('block-graph').innerText();
  assert.doesNotMatch(graphText, /#block\d+/, 'no auto-generated node name is shown');
  assert.match(graphText, /auto-named node/);
  assert.equal((await page.getByTestId('side-pane').boundingBox())!.width, widthWorkspace, 'the side pane keeps its width between views');
  await app.shot('polish-07-block-graph');
  assert.deepEqual(app.problems, []);
});

test('bitmap names: over 1023 bytes refused in the form; a long valid name wraps in its dialog; the toast covers no content', async (t) => {
  const app = await suite.open(t, 'names');
  const { page } = app;
  const top = buildSeed(path.join(app.dataDir, 'vm'));
  await addImage(page, top);
  await page.getByTestId('chain-view').waitFor();
  await page.locator(`[data-testid="layer-card"][data-path="${top}"] [data-testid="layer-add-bitmap"]`).click();
  await page.getByTestId('bitmap-name').fill('é'.repeat(600));
  assert.match(await page.getByTestId('bitmap-name-too-long').innerText(), /at most 1023 bytes \(UTF-8\); this one has 1200/);
  assert.equal(await page.getByTestId('bitmap-review-btn').isDisabled(), true);
  await app.shot('polish-08-name-too-long');

  const long = 'n'.repeat(1000);
  await page.getByTestId('bitmap-name').fill(long);
  await page.getByTestId('bitmap-review-btn').click();
  await page.getByTestId('dialog-apply').waitFor();
  const box = (await page.getByTestId('bitmap-dialog').boundingBox())!;
  assert.ok(box.x >= 0 && box.y >= 0 && box.x + box.width <= 1440 && box.y + box.height <= 900, `dialog on screen: ${JSON.stringify(box)}`);
  const overflow = await page.$$eval('[data-testid="bitmap-dialog"] *', (els) => els.filter((e) => e.tagName !== 'PRE' && e.scrollWidth > e.clientWidth + 1 && getComputedStyle(e).overflowX === 'visible').map((e) => e.className));
  assert.deepEqual(overflow, [], 'nothing in the dialog runs past its edge');
  await app.shot('polish-09-long-name-review');
  await page.getByTestId('dialog-apply').click();
  const toast = page.getByTestId('toast').first();
  await toast.waitFor();
  await page.locator(`[data-testid="bitmap-chip"][data-name="${long}"]`).waitFor();
  const t0 = (await toast.boundingBox())!;
  const view = (await page.locator('#view-panel').boundingBox())!;
  const status = (await page.getByTestId('status-bar').boundingBox())!;
  assert.ok(t0.y >= view.y + view.height - 0.5, `the toast is below the content: ${t0.y} vs ${view.y + view.height}`);
  assert.ok(t0.y + t0.height <= status.y + 0.5, 'and above the status bar');
  await app.shot('polish-10-toast');
  assert.deepEqual(app.problems, []);
});
