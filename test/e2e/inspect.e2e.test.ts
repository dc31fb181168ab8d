// End to end through the real browser-mode server, the real core and real qcow2 files made by QEMU's
// tools: the renderer as a user sees it in Debian's Chromium. Screenshots go to
// test-output/screenshots/ for a human look.
import { test } from 'vitest';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import type { Page } from 'playwright-core';
import { startBrowserServer } from '../../electron/core/server/browser-server.ts';
import { qemuImg, qemuIo } from '../helpers/qemu.ts';
import { addImage, buildSeed, e2eSuite, staticDir } from './e2e-helpers.ts';
import { crashWhileOpen } from '../repair/scenarios.ts';

const KiB = 1024;
const suite = e2eSuite('strata-e2e-');
const tmpRoot = suite.tmpRoot;

/**
 * What Electron's preload exposes as window.strata (StrataApi + pathForFile), played here over the
 * browser server's WebSocket, so the renderer's IPC transport, Browse… and drag-and-drop run for real.
 * Plain JavaScript in a string: it runs in the page before its scripts, untouched by the TS loader.
 */
const FAKE_DESKTOP_BRIDGE = `(({ wsUrl, dropDir }) => {
  const pending = new Map();
  const listeners = new Map();
  const queue = [];
  let next = 0;
  const ws = new WebSocket(wsUrl);
  ws.onopen = () => queue.splice(0).forEach((m) => ws.send(m));
  ws.onmessage = (ev) => {
    const m = JSON.parse(String(ev.data));
    if (typeof m.id === 'number') {
      const resolve = pending.get(m.id);
      pending.delete(m.id);
      if (resolve) resolve(m.reply);
    } else (listeners.get(m.event) || new Set()).forEach((l) => l(m.payload));
  };
  window.strata = Object.freeze({
    invoke: (channel, arg) =>
      new Promise((resolve) => {
        const id = ++next;
        pending.set(id, resolve);
        const msg = JSON.stringify({ id, channel, arg: arg === undefined ? null : arg });
        if (ws.readyState === WebSocket.OPEN) ws.send(msg);
        else queue.push(msg);
      }),
    on: (event, l) => {
      if (!listeners.has(event)) listeners.set(event, new Set());
      listeners.get(event).add(l);
      return () => listeners.get(event).delete(l);
    },
    pathForFile: (file) => dropDir + '/' + file.name,
  });
})`;

/** Drops a (fake) file named `name` on the window, as a file manager would. */
async function dropFile(page: Page, name: string): Promise<void> {
  const dt = await page.evaluateHandle((n) => {
    const d = new DataTransfer();
    d.items.add(new File(['not really a disk'], n));
    return d;
  }, name);
  await page.locator('body').dispatchEvent('dragenter', { dataTransfer: dt });
  await page.locator('body').dispatchEvent('dragover', { dataTransfer: dt });
  await page.locator('body').dispatchEvent('drop', { dataTransfer: dt });
}


async function chips(page: Page): Promise<Record<string, string>> {
  return page.$$eval('[data-testid="bitmap-chip"]', (els) => Object.fromEntries(els.map((e) => [e.getAttribute('data-name'), e.getAttribute('data-state')])));
}

/** Waits until the inspector's main canvas answered for the current view, and returns its cells. */
async function markedCells(page: Page): Promise<string> {
  const canvas = page.getByTestId('inspector-canvas');
  await canvas.and(page.locator('[data-state="ready"], [data-state="error"]')).waitFor();
  return (await canvas.getAttribute('data-marked')) ?? '';
}

/** The ruler's ticks: each one's byte offset and label. */
async function rulerTicks(page: Page): Promise<{ offset: number; label: string }[]> {
  return page.$$eval('[data-testid="ruler-tick"]', (els) => els.map((e) => ({ offset: Number(e.getAttribute('data-offset')), label: (e.textContent ?? '').trim() })));
}

/** Ticks one round step apart (1, 2, 5, 10, 20, 50, 100, 200 or 512 of a binary unit), each label a round number naming its offset. */
function assertRoundTicks(ticks: { offset: number; label: string }[]): void {
  const units: Record<string, number> = { B: 1, KiB: 1024, MiB: 1024 ** 2, GiB: 1024 ** 3, TiB: 1024 ** 4 };
  for (const { offset, label } of ticks) {
    const m = /^(\d+(?:\.5)?) (B|KiB|MiB|GiB|TiB)$/.exec(label);
    assert.ok(label === '0' ? offset === 0 : m, `tick label ${label}`);
    if (m) assert.equal(Number(m[1]) * units[m[2]], offset, `${label} at ${offset}`);
  }
  const step = ticks[1].offset - ticks[0].offset;
  ticks.slice(1).forEach((t, i) => assert.equal(t.offset - ticks[i].offset, step, JSON.stringify(ticks)));
  const round = Object.values(units).flatMap((u) => [1, 2, 5, 10, 20, 50, 100, 200, 512].map((k) => k * u));
  assert.ok(round.includes(step), `step ${step}`);
}

async function openSince(page: Page, checkpoint: string): Promise<string> {
  await page.getByTestId('tab-chain').click();
  await page.locator(`[data-testid="checkpoint"][data-name="${checkpoint}"] .cp__row`).click();
  await page.getByTestId('inspector-title').filter({ hasText: `Changes since checkpoint ${checkpoint}` }).waitFor();
  return markedCells(page);
}

test('first run: the empty workspace offers the demo, builds it with progress and opens the seed chain', async (t) => {
  const app = await suite.open(t, 'demo');
  const { page } = app;
  await page.getByTestId('welcome-panel').waitFor();
  await page.getByTestId('status-connection').and(page.locator('[data-state="open"]')).waitFor();
  assert.match(await page.getByTestId('status-transport').innerText(), /Browser mode/);
  assert.match(await page.getByTestId('status-qemu').innerText(), /qemu-img \d+\.\d+/);
  await app.shot('01-welcome');

  await page.getByTestId('build-demo').click();
  await page.getByTestId('demo-step').waitFor();
  await page.waitForFunction(() => Number(document.querySelector('[data-testid="demo-progress"]')?.getAttribute('aria-valuenow')) > 0);
  await app.shot('02-demo-progress');

  await page.getByTestId('chain-view').waitFor({ timeout: 60_000 });
  assert.equal(await page.getByTestId('workspace-item').count(), 2);
  assert.equal(await page.getByTestId('image-title').innerText(), 'top.qcow2');
  assert.equal(await page.getByTestId('layer-card').count(), 2);
  assert.deepEqual(await chips(page), { bitmap1: 'disabled', bitmap2: 'recording', bitmap3: 'recording' });
  await app.shot('03-demo-seed-chain');

  // The large demo chain: four layers over 20 GiB, drawn as pixel columns, not cells.
  await page.locator('[data-testid="workspace-item"][data-path$="vm-active.qcow2"] .ws-item__main').click();
  await page.getByTestId('layer-card').nth(3).waitFor();
  assert.equal(await page.getByTestId('layer-card').count(), 4);
  await app.shot('04-demo-large-chain');
  await page.getByTestId('tab-inspector').click();
  const cells = await markedCells(page);
  assert.ok(cells.length > 200, `expected pixel columns over 20 GiB, got ${cells.length}`);
  assert.equal(await page.getByTestId('inspector-canvas').getAttribute('data-cells'), '0');
  await page.getByTestId('allocation-canvas').and(page.locator('[data-state="ready"]')).waitFor();
  // The ruler over 20 GiB: ticks at multiples of one round step, labelled as round numbers.
  const ticks = await rulerTicks(page);
  assert.ok(ticks.length >= 5, JSON.stringify(ticks));
  assert.equal(ticks[ticks.length - 1].offset, 20 * 1024 ** 3);
  assertRoundTicks(ticks);
  await app.shot('05-demo-large-inspector');

  // A narrower window: the strips follow the width (one bucket per column) and are drawn again.
  await page.setViewportSize({ width: 1180, height: 760 });
  await page.waitForFunction((n) => {
    const c = document.querySelector('[data-testid="inspector-canvas"]');
    return c?.getAttribute('data-state') === 'ready' && (c.getAttribute('data-marked') ?? '').length < n;
  }, cells.length);
  await app.shot('05b-demo-large-inspector-narrow');

  assert.deepEqual(app.problems, []);
});

test('the seed chain: chips, checkpoints, and the inspector shows the thread’s clusters exactly', async (t) => {
  const app = await suite.open(t, 'seed');
  const { page } = app;
  const top = buildSeed(path.join(app.dataDir, 'seed'));

  await page.getByTestId('welcome-panel').waitFor();
  await addImage(page, top);
  await page.getByTestId('chain-view').waitFor();
  assert.equal(await page.getByTestId('layer-card').count(), 2);
  // Top (active) layer first, base last.
  assert.deepEqual(await page.getByTestId('layer-name').allInnerTexts(), ['top.qcow2', 'base.qcow2']);
  assert.deepEqual(await chips(page), { bitmap1: 'disabled', bitmap2: 'recording', bitmap3: 'recording' });
  assert.deepEqual(await page.$$eval('[data-testid="checkpoint"]', (els) => els.map((e) => `${e.getAttribute('data-name')}:${e.getAttribute('data-state')}`)), [
    'bitmap1:ok',
    'bitmap2:ok',
    'bitmap3:ok',
  ]);

  // "Changes since" each checkpoint, cell per 64 KiB cluster, as in the seed thread.
  assert.equal(await openSince(page, 'bitmap1'), '--11111-');
  assert.equal(await page.getByTestId('inspector-canvas').getAttribute('data-cells'), '8');
  assert.equal(await openSince(page, 'bitmap2'), '---1111-');
  assert.equal(await openSince(page, 'bitmap3'), '---1-11-');

  // Allocation rows, top first: the overlay wrote ---D-DD-, the base AABBCC--.
  const alloc = page.getByTestId('allocation-canvas');
  await alloc.and(page.locator('[data-state="ready"]')).waitFor();
  assert.equal(await alloc.getAttribute('data-marked-lanes'), JSON.stringify(['---1-11-', '111111--']));

  // Hover cluster 3: the exact dirty range under the cursor.
  await openSince(page, 'bitmap1');
  const box = (await page.getByTestId('inspector-canvas').boundingBox())!;
  await page.mouse.move(box.x + (box.width * 3.5) / 8, box.y + box.height / 2);
  await page.getByTestId('inspector-tooltip').waitFor();
  const extent = page.locator('[data-testid="hover-source"][data-label="since bitmap1"] [data-testid="hover-extent"]');
  await extent.waitFor();
  assert.equal(await extent.getAttribute('data-start'), String(192 * KiB));
  assert.equal(await extent.getAttribute('data-length'), String(64 * KiB));
  assert.match(await page.getByTestId('hover-range').innerText(), /192 KiB – 256 KiB/);
  await app.shot('06-seed-inspector-hover');

  // A clean cluster lists nothing for the checkpoint but shows the base's allocation there; the
  // tooltip and the details say it with the same words.
  await page.mouse.move(box.x + (box.width * 0.5) / 8, box.y + box.height / 2);
  await page.locator('[data-testid="hover-details"][data-start="0"]').waitFor();
  assert.equal(await page.locator('[data-testid="hover-source"][data-label="since bitmap1"] [data-testid="hover-extent"]').count(), 0);
  assert.equal(await page.locator('[data-testid="hover-source"][data-label="allocated in base.qcow2"] [data-testid="hover-extent"]').count(), 1);
  assert.match(await page.getByTestId('inspector-tooltip').innerText(), /since bitmap1: nothing marked/);
  assert.match(await page.locator('[data-testid="hover-source"][data-label="since bitmap1"]').innerText(), /nothing marked/);

  // The pointer leaves the strips: the readout forgets the range instead of keeping the last one.
  await page.mouse.move(box.x + box.width / 2, box.y - 120);
  await page.getByTestId('hover-range').waitFor({ state: 'detached' });
  assert.equal(await page.getByTestId('hover-details').getAttribute('data-start'), null);
  assert.equal(await page.getByTestId('inspector-tooltip').count(), 0);
  assertRoundTicks(await rulerTicks(page));
  await app.shot('06b-seed-inspector-left');
  await page.mouse.move(0, 0);

  // A chip opens the inspector on that one bitmap.
  await page.getByTestId('tab-chain').click();
  await page.locator('[data-testid="bitmap-chip"][data-name="bitmap2"]').click();
  await page.getByTestId('inspector-title').filter({ hasText: 'Bitmap bitmap2 in base.qcow2' }).waitFor();
  assert.equal(await markedCells(page), '----11--');

  // A click pins cluster 4's readout; choosing other bitmaps drops it (it was read for bitmap2 alone).
  const b1 = (await page.getByTestId('inspector-canvas').boundingBox())!;
  await page.mouse.click(b1.x + (b1.width * 4.5) / 8, b1.y + b1.height / 2);
  await page.locator('[data-testid="hover-details"][data-start="262144"]').waitFor();
  await page.getByTestId('hover-range').waitFor();

  // Overlay several bitmaps: a lane each, the canvas's cells the union.
  await page.locator('[data-testid="source-bitmap"][data-name="bitmap1"]').click();
  await page.getByTestId('hover-range').waitFor({ state: 'detached' });
  await page.locator('[data-testid="source-bitmap"][data-name="bitmap3"]').click();
  assert.equal(await markedCells(page), '--11111-');
  assert.equal(await page.getByTestId('inspector-canvas').getAttribute('data-marked-lanes'), JSON.stringify(['----11--', '--11----', '---1-11-']));
  // Each lane names the layer its bitmap lives in, however many lanes there are.
  assert.deepEqual(await page.getByTestId('lane-sublabel').allInnerTexts(), ['bitmap in base.qcow2', 'bitmap in base.qcow2', 'bitmap in top.qcow2']);
  await app.shot('07-seed-inspector-overlay');

  // Zoom in with the button, then drag-select two clusters, then back to the whole disk.
  await page.getByTestId('zoom-in').click();
  await page.waitForFunction(() => document.querySelector('[data-testid="inspector-canvas"]')?.getAttribute('data-cells') === '4');
  await page.getByTestId('zoom-reset').click();
  await page.waitForFunction(() => document.querySelector('[data-testid="inspector-canvas"]')?.getAttribute('data-cells') === '8');
  const b2 = (await page.getByTestId('inspector-canvas').boundingBox())!;
  // Drag from inside cluster 3 to inside cluster 6: the view snaps outwards to whole clusters 3..6.
  await page.mouse.move(b2.x + (b2.width * 3.2) / 8, b2.y + 10);
  await page.mouse.down();
  await page.mouse.move(b2.x + (b2.width * 5.0) / 8, b2.y + 10, { steps: 4 });
  await page.mouse.move(b2.x + (b2.width * 6.8) / 8, b2.y + 10, { steps: 4 });
  await page.mouse.up();
  await page.waitForFunction(() => document.querySelector('[data-testid="inspector-canvas"]')?.getAttribute('data-grid-start') === String(3 * 64 * 1024));
  assert.match(await page.getByTestId('inspector-range').innerText(), /192 KiB – 448 KiB/);
  assert.equal(await markedCells(page), '1111');
  assertRoundTicks(await rulerTicks(page));
  await app.shot('08-seed-inspector-zoomed');
  await page.getByTestId('zoom-reset').click();
  assert.equal(await markedCells(page), '--11111-');
  // The wheel zooms around the pointer.
  await page.mouse.move(b2.x + b2.width * 0.1, b2.y + 10);
  await page.mouse.wheel(0, -400);
  await page.waitForFunction(() => Number(document.querySelector('[data-testid="inspector-canvas"]')?.getAttribute('data-cells')) < 8);
  assert.equal(await page.getByTestId('inspector-canvas').getAttribute('data-grid-start'), '0');
  await page.keyboard.press('Escape');
  await page.getByTestId('zoom-reset').click();
  assert.equal(await markedCells(page), '--11111-');

  // Someone adds a bitmap outside Strata: Rescan picks it up and History says what changed.
  qemuImg('bitmap', '--add', top, 'bitmap4');
  await page.getByTestId('tab-chain').click();
  await page.getByTestId('rescan').click();
  await page.locator('[data-testid="bitmap-chip"][data-name="bitmap4"]').waitFor();
  await page.getByTestId('tab-history').click();
  await page.getByTestId('history-change').filter({ hasText: "bitmap 'bitmap4' added in top.qcow2" }).waitFor();
  await app.shot('09-seed-history');

  // Browser mode cannot know a dropped file's path: it says so instead of failing silently.
  await dropFile(page, 'disk.qcow2');
  assert.match(await page.locator('[data-testid="error-notice"][data-code="E_BAD_INPUT"]').innerText(), /type its absolute path/);

  // Errors from the core, in plain words with their code.
  await addImage(page, path.join(app.dataDir, 'nope.qcow2'));
  await page.locator('[data-testid="error-notice"][data-code="E_NOT_FOUND"]').waitFor();
  const orphan = path.join(app.dataDir, 'orphan.qcow2');
  qemuImg('create', '-q', '-f', 'qcow2', '-u', '-b', path.join(app.dataDir, 'gone.qcow2'), '-F', 'qcow2', orphan, '1M');
  await app.shot('10-add-error');
  // A missing backing file is not a dead end: the image is added and its chain shows the missing file.
  await addImage(page, orphan);
  await page.getByTestId('tab-chain').click();
  const missing = page.getByTestId('missing-backing');
  await missing.waitFor();
  assert.equal(await missing.getAttribute('data-expected'), path.join(app.dataDir, 'gone.qcow2'));

  assert.deepEqual(app.problems, []);
});

test('an overlay made without bitmaps makes the checkpoints unknown and names the layer', async (t) => {
  const app = await suite.open(t, 'unknown', { scale: 2 });
  const { page } = app;
  const top = buildSeed(path.join(app.dataDir, 'seed'));
  const over = path.join(app.dataDir, 'seed', 'over.qcow2');
  qemuImg('create', '-q', '-f', 'qcow2', '-b', top, '-F', 'qcow2', over);
  qemuIo(over, ['write -P 0x45 0 64k']);

  await addImage(page, over);
  await page.getByTestId('chain-view').waitFor();
  assert.equal(await page.getByTestId('layer-card').count(), 3);
  const states = await page.$$eval('[data-testid="checkpoint"]', (els) => els.map((e) => e.getAttribute('data-state')));
  assert.deepEqual(states, ['unknown', 'unknown', 'unknown']);
  const warning = page.locator('[data-testid="checkpoint"][data-name="bitmap1"] [data-testid="checkpoint-problems"]');
  assert.match(await warning.innerText(), /layer over\.qcow2 has no bitmap for checkpoint 'bitmap1'/);
  await app.shot('11-unknown-checkpoint');

  // The inspector says so too rather than drawing a smaller, wrong set.
  assert.equal(await openSince(page, 'bitmap1'), '');
  assert.equal(await page.getByTestId('inspector-canvas').getAttribute('data-state'), 'error');
  await page.getByText('Cannot be known').first().waitFor();
  assert.match(await page.getByTestId('inspector-warning').innerText(), /layer over\.qcow2 has no bitmap for checkpoint 'bitmap1'/);
  await app.shot('12-unknown-inspector');

  assert.deepEqual(app.problems, []);
});

test('a lost connection shows a banner and the page recovers when the core is back', async (t) => {
  const app = await suite.open(t, 'reconnect');
  const { page } = app;
  await page.getByTestId('welcome-panel').waitFor();
  await page.getByTestId('status-connection').and(page.locator('[data-state="open"]')).waitFor();

  await app.server.close();
  await page.getByTestId('connection-banner').waitFor();
  await app.shot('13-connection-lost');

  const again = await startBrowserServer({ service: app.service, staticDir, port: app.server.port, token: app.server.token });
  t.onTestFinished(() => again.close());
  await page.getByTestId('connection-banner').waitFor({ state: 'detached', timeout: 15_000 });
  await page.getByTestId('status-connection').and(page.locator('[data-state="open"]')).waitFor();

  // Another window on the same core: what it adds shows up here through the pushed events.
  const top = buildSeed(path.join(app.dataDir, 'seed'));
  const other = await page.context().newPage();
  await other.goto(app.server.url);
  await addImage(other, top);
  await page.getByTestId('chain-view').waitFor();
  assert.equal(await page.getByTestId('workspace-item').count(), 1);
  await other.close();

  // Only the refused reconnects may complain.
  // While the core is down the browser reports the refused socket (and any refused load) itself.
  const unexpected = app.problems.filter((p) => !/WebSocket connection to .* failed|net::ERR_CONNECTION_REFUSED/.test(p));
  assert.deepEqual(unexpected, []);
});

test('desktop mode (window.strata from the preload): Browse…, drag-and-drop and remove', async (t) => {
  const seedDir = path.join(tmpRoot, 'desktop-seed');
  const top = buildSeed(seedDir);
  qemuImg('create', '-q', '-f', 'qcow2', '-b', top, '-F', 'qcow2', path.join(seedDir, 'over.qcow2'));
  const app = await suite.open(t, 'desktop', {
    openImageDialog: async () => top,
    // The fake bridge stands in for the preload, talking to this server's WebSocket.
    initScript: (server) => `${FAKE_DESKTOP_BRIDGE}(${JSON.stringify({ wsUrl: `ws://127.0.0.1:${server.port}/ws?token=${server.token}`, dropDir: seedDir })});`,
  });
  const { page } = app;
  await page.getByTestId('welcome-panel').waitFor();
  assert.match(await page.getByTestId('status-transport').innerText(), /Electron IPC/);
  assert.equal(await page.getByTestId('status-transport').getAttribute('data-kind'), 'ipc');

  // Browse… asks the core's native picker (here: answers the seed's top) and adds what it returns.
  await page.getByTestId('add-image-browse').click();
  await page.getByTestId('chain-view').waitFor();
  assert.equal(await page.getByTestId('image-title').innerText(), 'top.qcow2');

  // A file dropped on the window is added by the path the preload reports for it.
  await dropFile(page, 'over.qcow2');
  await page.getByTestId('image-title').filter({ hasText: 'over.qcow2' }).waitFor();
  await page.getByTestId('layer-card').nth(2).waitFor();
  assert.equal(await page.getByTestId('workspace-item').count(), 2);
  await app.shot('14-desktop-mode');

  // Remove both: the workspace is empty again and offers the demo.
  await page.locator('[data-testid="workspace-item"][data-path$="over.qcow2"] [data-testid="workspace-remove"]').click();
  await page.getByTestId('image-title').filter({ hasText: 'top.qcow2' }).waitFor();
  await page.locator('[data-testid="workspace-item"] [data-testid="workspace-remove"]').click();
  await page.getByTestId('welcome-panel').waitFor();
  assert.equal(await page.getByTestId('workspace-item').count(), 0);

  assert.deepEqual(app.problems, []);
});

test('actions that cannot work are not offered: an in-use bitmap offers only Remove; a raw image no Add', async (t) => {
  const app = await suite.open(t, 'dead-ends');
  const { page } = app;
  const dir = path.join(app.dataDir, 'dead-ends');
  fs.mkdirSync(dir, { recursive: true });
  // A bitmap left in-use: a QEMU had the image read-write and was killed before storing it.
  const img = path.join(dir, 'crashed.qcow2');
  qemuImg('create', '-q', '-f', 'qcow2', img, '1M');
  qemuImg('bitmap', '--add', img, 'good');
  await crashWhileOpen(img, 0);
  const raw = path.join(dir, 'disk.raw');
  fs.writeFileSync(raw, Buffer.alloc(1024 * 1024));

  await page.getByTestId('welcome-panel').waitFor();
  await addImage(page, img);
  await page.getByTestId('chain-view').waitFor();
  await page.locator('[data-testid="bitmap-actions"][data-name="good"]').click();
  const items = await page.locator('[role="menuitem"]').allInnerTexts();
  assert.ok(items.some((x) => /Remove/.test(x)), items.join(' | '));
  assert.ok(!items.some((x) => /^(Disable|Enable|Clear|Merge)/.test(x.trim())), `no action QEMU refuses: ${items.join(' | ')}`);
  await app.shot('dead-ends-in-use-menu');
  await page.keyboard.press('Escape');

  await addImage(page, raw);
  await page.locator(`[data-testid="layer-card"][data-path="${raw}"]`).waitFor();
  assert.match(await page.getByTestId('layer-no-bitmaps').innerText(), /raw image cannot hold bitmaps/);
  assert.equal(await page.getByTestId('layer-add-bitmap').count(), 0);
  assert.deepEqual(app.problems, []);
});
