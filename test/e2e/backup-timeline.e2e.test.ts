// End to end for the Backups timeline: the demo (seed) chain backed up from the UI at every level,
// its points on the timeline in their lanes with parent links, the axis grouped by day once the
// points are days and months apart (the manifest's times moved back by the test: QEMU cannot take a
// backup two months ago), no two labels overlapping at 1280×800 nor in a narrow window, the
// keyboard moving between points and Enter opening a restore that qemu-img compare finds equal to a
// copy of the disk taken at that point, a single point verified, and the table still there.
// Screenshots: test-output/screenshots/timeline-*.png.
import { test } from 'vitest';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import type { Page } from 'playwright-core';
import { qemuImg, qemuIo } from '../helpers/qemu.ts';
import { rawCopy } from '../helpers/truth.ts';
import { flipByteAt } from '../backup/helpers.ts';
import { addImage, backUp, buildSeed, e2eSuite, restoreFromForm } from './e2e-helpers.ts';

const suite = e2eSuite('strata-e2e-timeline-');

/** Pairs of the timeline's visible labels whose boxes overlap, as "text / text". */
function overlappingLabels(page: Page): Promise<string[]> {
  return page.evaluate(() => {
    const sel = ['text', '.tl__id', '.tl__text > span', '.tl__lane-label'].map((s) => `[data-testid="backup-timeline"] ${s}`).join(', ');
    // What the timeline's scrolling clips away is not on screen: only the part inside it counts.
    const view = document.querySelector('[data-testid="backup-timeline"] .tl__scroll')!.getBoundingClientRect();
    const shown = (e: Element) => {
      const r = e.getBoundingClientRect();
      return e.closest('.tl__scroll') ? new DOMRect(Math.max(r.left, view.left), r.top, Math.min(r.right, view.right) - Math.max(r.left, view.left), r.height) : r;
    };
    const boxes = [...document.querySelectorAll(sel)].map((e) => ({ t: (e.textContent ?? '').trim(), r: shown(e) })).filter((b) => b.r.width > 0 && b.t);
    const out: string[] = [];
    for (let i = 0; i < boxes.length; i++) {
      for (let j = i + 1; j < boxes.length; j++) {
        const [a, b] = [boxes[i].r, boxes[j].r];
        if (a.left < b.right - 0.5 && b.left < a.right - 0.5 && a.top < b.bottom - 0.5 && b.top < a.bottom - 0.5) out.push(`${boxes[i].t} / ${boxes[j].t}`);
      }
    }
    return out;
  });
}

/** The timeline at the top of the view and no toast over it, then a screenshot; the focus left where it was. */
async function shotTimeline(app: { page: Page; shot(n: string): Promise<void> }, name: string): Promise<void> {
  const { page } = app;
  // Clicked from the page's script: the keyboard focus stays where the test put it.
  await page.evaluate(() => document.querySelectorAll<HTMLButtonElement>('[data-testid="toast"] button[aria-label="Dismiss"]').forEach((b) => b.click()));
  await page.getByTestId('toast').first().waitFor({ state: 'detached' });
  await page.getByTestId('backup-timeline').evaluate((e) => e.closest('.panel')!.scrollIntoView({ block: 'start' }));
  await app.shot(name);
}

const focusedId = (page: Page) => page.evaluate(() => (document.activeElement as HTMLElement | null)?.dataset.id ?? null);
const attrs = (page: Page, attr: string) => page.getByTestId('backup-point').evaluateAll((els, a) => els.map((e) => e.getAttribute(a)), attr);

test('the demo chain backed up at every level: the timeline by day, readable wide and narrow, the keyboard, restore and verify from it', async (t) => {
  const app = await suite.open(t, 'timeline');
  const { page } = app;
  await page.setViewportSize({ width: 1280, height: 800 });
  const dir = path.join(app.dataDir, 'demo');
  const top = buildSeed(dir);
  const repo = path.join(app.dataDir, 'repo');
  await page.getByTestId('welcome-panel').waitFor();
  await addImage(page, top);
  await page.getByTestId('chain-view').waitFor();
  await page.getByTestId('tab-backups').click();
  await page.getByTestId('backup-repo').fill(repo);
  await page.getByTestId('backup-repo-use').click();
  await page.getByTestId('backup-empty').waitFor();

  await backUp(page, 'full');
  qemuIo(top, ['write -P 0x61 0 64k']);
  await backUp(page, 'inc');
  qemuIo(top, ['write -P 0x62 128k 64k']);
  await backUp(page, 'inc');
  const atInc3 = rawCopy(top, path.join(dir, 'at-inc-3.raw'));
  qemuIo(top, ['write -P 0x63 448k 64k']);
  await backUp(page, 'diff');
  await backUp(page, 'copy');
  await page.locator('[data-testid="backup-point"][data-id="copy-5"]').waitFor();
  assert.deepEqual(await attrs(page, 'data-id'), ['full-1', 'inc-2', 'inc-3', 'diff-4', 'copy-5']);
  assert.deepEqual(await page.locator('.tl__lane-label:not(.tl__lane-label--size)').allInnerTexts(), ['full', 'incremental', 'differential', 'copy']);
  assert.deepEqual(
    await page.getByTestId('timeline-link').evaluateAll((els) => els.map((e) => `${e.getAttribute('data-from')}>${e.getAttribute('data-to')}`)),
    ['full-1>inc-2', 'inc-2>inc-3', 'full-1>diff-4'],
  );
  assert.deepEqual(await attrs(page, 'data-verified'), ['never', 'never', 'never', 'never', 'never']);
  // The newest point is selected: its details.
  assert.equal(await page.getByTestId('backup-point-details').getAttribute('data-id'), 'copy-5');
  await shotTimeline(app, 'timeline-minutes');

  // Days and months apart: the manifest's times moved back (durations kept), the repository read again.
  const manifestPath = path.join(repo, 'strata-backups.json');
  const manifest = JSON.parse(fs.readFileSync(manifestPath, 'utf8'));
  const today = new Date();
  today.setHours(0, 0, 0, 0);
  const back = (days: number, h: number, m: number) => today.getTime() - days * 86_400_000 + (h * 60 + m) * 60_000;
  const moved: Record<string, number> = { 'full-1': back(62, 9, 0), 'inc-2': back(2, 9, 0), 'inc-3': back(2, 9, 4), 'diff-4': back(1, 21, 30) };
  for (const b of manifest.backups) {
    if (!(b.id in moved)) continue;
    const took = Date.parse(b.finishedAt) - Date.parse(b.createdAt);
    b.createdAt = new Date(moved[b.id]).toISOString();
    b.finishedAt = new Date(moved[b.id] + took).toISOString();
  }
  fs.writeFileSync(manifestPath, JSON.stringify(manifest, null, 2));
  await page.locator('button[title="Read the repository again"]').click();
  await page.getByTestId('timeline-day').nth(3).waitFor();
  assert.equal(await page.getByTestId('timeline-day').count(), 4, 'one group per day');
  const gaps = await page.getByTestId('timeline-gap').allTextContents();
  // 62 days less 0 h, 36.4 h (rounded to days), and from yesterday 21:30 to now (hours, or 1 day just before midnight).
  assert.deepEqual(gaps.slice(0, 2), ['2 months', '2 days']);
  assert.match(gaps[2], /^(\d+ h|1 day)$/);
  const xs = await page.getByTestId('backup-point').evaluateAll((els) => els.map((e) => e.getBoundingClientRect().left));
  assert.ok(xs.every((x, i) => i === 0 || x > xs[i - 1]), 'oldest to newest, left to right');
  assert.deepEqual(await overlappingLabels(page), [], 'at 1280×800 no label overlaps another');
  await shotTimeline(app, 'timeline-1280');

  // Selecting the full shows what depends on it.
  await page.locator('[data-testid="backup-point"][data-id="full-1"]').click();
  const details = page.getByTestId('backup-point-details');
  await page.locator('[data-testid="backup-point-details"][data-id="full-1"]').waitFor();
  assert.match(await page.getByTestId('backup-point-dependents').innerText(), /^inc-2, inc-3, diff-4: removing full-1 alone would leave them unrestorable/);
  assert.equal(await page.locator('.tl__col--dependent').count(), 3);
  await shotTimeline(app, 'timeline-full-selected');

  // The keyboard: one tab stop, arrows along time and across lanes, Enter opens the restore.
  await page.locator('[data-testid="backup-point"][tabindex="0"]').focus();
  assert.equal(await page.locator('[data-testid="backup-point"][tabindex="0"]').count(), 1);
  assert.equal(await focusedId(page), 'full-1');
  await page.keyboard.press('End');
  assert.equal(await focusedId(page), 'copy-5');
  await page.keyboard.press('Home');
  await page.keyboard.press('ArrowRight');
  await page.keyboard.press('ArrowRight');
  assert.equal(await focusedId(page), 'inc-3');
  assert.equal(await details.getAttribute('data-id'), 'inc-3', 'the details follow');
  await page.keyboard.press('ArrowDown');
  assert.equal(await focusedId(page), 'diff-4', 'the lane below');
  await page.keyboard.press('ArrowUp');
  assert.equal(await focusedId(page), 'inc-3', 'back up: the nearest incremental');
  assert.equal(await page.getByTestId('backup-point-chain').innerText(), 'inc-3 ← inc-2 ← full-1');
  assert.equal(await page.locator('.tl__link--chain').count(), 2, 'the links it is restored through');
  await shotTimeline(app, 'timeline-keyboard');
  await page.keyboard.press('Enter');
  await page.getByTestId('backup-restore-form').waitFor();
  assert.match((await page.locator('#bk-restore-title').textContent()) ?? '', /^Restore\s+inc-3$/);
  assert.equal(await page.evaluate(() => (document.activeElement as HTMLElement | null)?.dataset.testid), 'backup-restore-to');
  const to = path.join(dir, 'restored-inc-3.raw');
  await restoreFromForm(page, to, 'raw');
  qemuImg('compare', '-q', '-f', 'raw', '-F', 'raw', atInc3, to);

  // Verify one point from its details: only it reads verified.
  await page.locator('[data-testid="backup-point"][data-id="inc-3"]').click();
  await page.getByTestId('backup-verify-point').click();
  await page.locator('[data-testid="backup-point"][data-id="inc-3"][data-verified="ok"]').waitFor({ timeout: 60_000 });
  assert.deepEqual(await attrs(page, 'data-verified'), ['never', 'never', 'ok', 'never', 'never']);
  assert.match(await page.getByTestId('backup-point-verify').innerText(), /^OK, /);

  // A byte of diff-4's data flipped, every point verified: diff-4 reads damaged, the others OK.
  const diff4 = manifest.backups.find((b: { id: string }) => b.id === 'diff-4');
  flipByteAt(path.join(repo, diff4.file), diff4.digests.runs[0].offset + 100);
  await page.getByTestId('backup-verify').click();
  await page.locator('[data-testid="backup-point"][data-id="diff-4"][data-verified="damaged"]').waitFor({ timeout: 60_000 });
  assert.deepEqual(await attrs(page, 'data-verified'), ['ok', 'ok', 'ok', 'damaged', 'ok']);
  await page.locator('[data-testid="backup-point"][data-id="diff-4"]').click();
  assert.match(await page.getByTestId('backup-point-verify').innerText(), /^damaged, .*diff-4\.qcow2: .*sha256 mismatch/);
  await shotTimeline(app, 'timeline-damaged');

  // A prune plan (keep the last 2: copy-5 and diff-4, which needs full-1) marked on the timeline.
  await page.getByTestId('backup-keepLast').fill('2');
  await page.getByTestId('backup-prune-plan').click();
  await page.getByTestId('backup-prune-result').waitFor();
  assert.deepEqual(await attrs(page, 'data-prune'), ['keep', 'remove', 'remove', 'keep', 'keep']);
  assert.deepEqual(await page.locator('.tl__link--goes').evaluateAll((els) => els.map((e) => e.getAttribute('data-to'))), ['inc-2', 'inc-3']);
  assert.deepEqual(await overlappingLabels(page), [], 'with the plan\'s line too');
  await shotTimeline(app, 'timeline-prune-plan');

  // A narrow window: the timeline scrolls instead of crowding, still without overlaps.
  await page.setViewportSize({ width: 900, height: 800 });
  await page.waitForFunction(() => {
    const s = document.querySelector('.tl__scroll');
    return !!s && s.scrollWidth > s.clientWidth;
  });
  assert.deepEqual(await overlappingLabels(page), [], 'narrow: no label overlaps another');
  assert.deepEqual(await page.locator('.tl__lane-label:not(.tl__lane-label--size)').allInnerTexts(), ['full', 'inc', 'diff', 'copy'], 'short lane names');
  const shows = (id: string) =>
    page.evaluate((x) => {
      const [s, b] = [document.querySelector('.tl__scroll')!.getBoundingClientRect(), document.querySelector(`[data-testid="backup-point"][data-id="${x}"]`)!.getBoundingClientRect()];
      return b.left >= s.left - 1 && b.right <= s.right + 1;
    }, id);
  assert.ok(await shows('diff-4'), 'the selected point is scrolled into view');
  assert.ok(!(await shows('full-1')), 'the oldest is scrolled off to the left');
  await page.locator('[data-testid="backup-point"][data-id="diff-4"]').focus();
  await page.keyboard.press('Home');
  assert.ok(await shows('full-1'), 'Home brings the oldest into view');
  await shotTimeline(app, 'timeline-narrow');

  // The table is one click away, with the same points.
  await page.getByTestId('backup-as-table').click();
  await page.locator('tr[data-testid="backup-point"]').nth(4).waitFor();
  assert.deepEqual(await attrs(page, 'data-id'), ['full-1', 'inc-2', 'inc-3', 'diff-4', 'copy-5']);
  assert.equal(await page.getByTestId('backup-timeline').count(), 0);
  assert.deepEqual(app.problems, []);
});
