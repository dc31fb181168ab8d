// Shared by the e2e files written after inspect.e2e.test.ts (which keeps its own copies): a fresh
// core with its own data folder, its browser-mode server, and Debian's Chromium on it, collecting
// console errors and CSP violations.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import os from 'node:os';
import { beforeAll, afterAll } from 'vitest';
import { chromium, type Browser, type Page } from 'playwright-core';
import { createService, type Service } from '../../electron/core/service.ts';
import { startBrowserServer, type BrowserServer } from '../../electron/core/server/browser-server.ts';
import { seedSteps } from '../../electron/core/demo/build-demo.ts';
import type { Cleanup } from '../helpers/qemu.ts';

export const root = path.resolve(import.meta.dirname, '../..');
export const staticDir = path.join(root, 'dist/renderer');
export const shots = path.join(root, 'test-output/screenshots');

/** Rebuild the renderer when its bundle is missing or older than any source file. */
export function ensureRendererBuilt(): void {
  const newest = (dir: string): number =>
    fs.readdirSync(dir, { withFileTypes: true }).reduce((m, d) => {
      const p = path.join(dir, d.name);
      return Math.max(m, d.isDirectory() ? newest(p) : fs.statSync(p).mtimeMs);
    }, 0);
  const index = path.join(staticDir, 'index.html');
  const src = Math.max(newest(path.join(root, 'renderer')), fs.statSync(path.join(root, 'electron/core/contract.ts')).mtimeMs);
  if (fs.existsSync(index) && fs.statSync(index).mtimeMs >= src) return;
  execFileSync(process.execPath, [path.join(root, 'node_modules/vite/bin/vite.js'), 'build', '--config', 'renderer/vite.config.ts', '--logLevel', 'warn'], {
    cwd: root,
    stdio: 'inherit',
  });
}

export function launchChromium(): Promise<Browser> {
  return chromium.launch({
    executablePath: '/usr/bin/chromium',
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
}

export interface App {
  page: Page;
  service: Service;
  server: BrowserServer;
  dataDir: string;
  /** console errors, page errors and CSP violations seen so far */
  problems: string[];
  shot(name: string): Promise<void>;
}

export interface AppOptions {
  /** device pixel ratio */
  scale?: number;
  /** the native file picker's stand-in (Electron only in the real app) */
  openImageDialog?: () => Promise<string | null>;
  /**
   * Plain JavaScript run in the page before its own scripts (e.g. a stand-in for Electron's preload).
   * Such a page opens without the token: whatever it brings must not need one.
   */
  initScript?: (server: BrowserServer) => string;
}

/** A fresh core (own data folder under `tmpRoot`), its browser-mode server, and a page showing it. */
export async function openApp(t: Cleanup, browser: Browser, tmpRoot: string, name: string, opts: AppOptions = {}): Promise<App> {
  const dataDir = fs.mkdtempSync(path.join(tmpRoot, `${name}-`));
  const service = createService({ dataDir, mode: 'browser', openImageDialog: opts.openImageDialog });
  const server = await startBrowserServer({ service, staticDir });
  // Reduced motion: the app then draws without transitions, so screenshots never catch a dialog mid-fade.
  const context = await browser.newContext({ viewport: { width: 1440, height: 900 }, deviceScaleFactor: opts.scale ?? 1, reducedMotion: 'reduce' });
  const page = await context.newPage();
  const problems: string[] = [];
  // Injected by the driver, not the page, so the CSP does not apply to it: reports every violation.
  await page.addInitScript(() => {
    document.addEventListener('securitypolicyviolation', (e) => console.error(`CSP violation: ${e.violatedDirective} ${e.blockedURI}`));
  });
  page.on('console', (m) => {
    if (m.type() === 'error' || /Content Security Policy|Refused to/i.test(m.text())) problems.push(`console.${m.type()}: ${m.text()}`);
  });
  page.on('pageerror', (e) => problems.push(`pageerror: ${e.message}`));
  if (opts.initScript) await page.addInitScript({ content: opts.initScript(server) });
  t.onTestFinished(async () => {
    await context.close();
    await server.close();
    // Stops every qemu-storage-daemon this core started.
    await service.close();
  });
  await page.goto(opts.initScript ? `${server.origin}/` : server.url);
  return {
    page,
    service,
    server,
    dataDir,
    problems,
    shot: async (n) => {
      await page.screenshot({ path: path.join(shots, `${n}.png`) });
    },
  };
}

export async function addImage(page: Page, p: string): Promise<void> {
  await page.getByTestId('add-image-path').fill(p);
  await page.getByTestId('add-image-submit').click();
}

/**
 * One Chromium and one temporary folder for a test file: started before its first test, closed and
 * removed after its last. `open` starts a fresh core + browser-mode server and page for one test.
 */
export function e2eSuite(prefix: string): { tmpRoot: string; open: (t: Cleanup, name: string, opts?: AppOptions) => Promise<App> } {
  let browser: Browser | undefined;
  const tmpRoot = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  beforeAll(async () => {
    ensureRendererBuilt();
    fs.mkdirSync(shots, { recursive: true });
    browser = await launchChromium();
  });
  afterAll(async () => {
    await browser?.close();
    fs.rmSync(tmpRoot, { recursive: true, force: true });
  });
  return { tmpRoot, open: (t, name, opts) => openApp(t, browser!, tmpRoot, name, opts) };
}

/** The seed thread's chain, built with qemu-img/qemu-io in `dir`; answers the top image. */
export function buildSeed(dir: string): string {
  fs.mkdirSync(dir, { recursive: true });
  for (const s of seedSteps(dir)) execFileSync(s.cmd, s.args, { cwd: dir, stdio: 'ignore' });
  return path.join(dir, 'top.qcow2');
}

export const liveChip = (page: Page, node: string, name: string) =>
  page.locator(`[data-testid="live-bitmap-chip"][data-node="${node}"][data-name="${name}"]`);

/** Opens the workspace's selected image in Strata's daemon from the Connections view. */
export async function openInDaemon(page: Page, readWrite: boolean): Promise<{ id: string; pid: number }> {
  await page.getByTestId('nav-connections').click();
  await page.getByTestId('connections-view').waitFor();
  const count = await page.getByTestId('connection-item').count();
  const rw = page.getByTestId('open-image-rw');
  if ((await rw.isChecked()) !== readWrite) await rw.click();
  if (readWrite) await page.getByTestId('open-image-rw-warning').waitFor();
  await page.getByTestId('open-image-submit').click();
  await page.locator('[data-testid="connection-item"]').nth(count).and(page.locator('[data-state="connected"]')).waitFor();
  const item = page.getByTestId('connection-item').nth(count);
  await page.locator('[data-testid="block-node"][data-name="strata-top"]').waitFor();
  return { id: (await item.getAttribute('data-id'))!, pid: Number(await item.getByTestId('connection-pid').innerText()) };
}

/** "Back up now" at `level` from an image's Backups tab, confirmed; answers what the confirmation said. */
export async function backUp(page: Page, level: string): Promise<string> {
  await page.getByTestId('backup-level').selectOption(level);
  await page.getByTestId('backup-take').click();
  const dialog = page.getByTestId('backup-dialog');
  await dialog.waitFor();
  const says = await dialog.innerText();
  await page.getByTestId('confirm-yes').click();
  await dialog.waitFor({ state: 'detached' });
  await page.getByTestId('backup-done').waitFor({ timeout: 60_000 });
  return says;
}

/** Fills the Backups tab's open restore form (destination, format), confirms, and waits for the restore to be done. */
export async function restoreFromForm(page: Page, to: string, format: 'qcow2' | 'raw'): Promise<void> {
  await page.getByTestId('backup-restore-format').selectOption(format);
  await page.getByTestId('backup-restore-to').fill(to);
  await page.getByTestId('backup-restore-go').click();
  await page.getByTestId('backup-restore-dialog').waitFor();
  await page.getByTestId('confirm-yes').click();
  await page.getByTestId('backup-restored').waitFor({ timeout: 60_000 });
}
