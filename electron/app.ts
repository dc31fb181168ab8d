// Application lifecycle of the desktop shell, with Electron passed in (main.ts passes the real module,
// the tests a fake): single-instance lock, data directory, the core service, IPC, the window.
import path from 'node:path';
import type { Service, ServiceOptions } from './core/service.ts';
import type { BrowserWindowLike, ElectronMain } from './electron-api.ts';
import { createOpenImageDialog } from './dialog.ts';
import { forwardEvents, registerIpc } from './ipc.ts';
import { menuTemplate } from './menu.ts';
import { BINDING_ENV, explainStartupError, resolveNativeBinding } from './native-sqlite.ts';
import { guardWebContents, hardenSession } from './security.ts';
import { createMainWindow } from './window.ts';

/** Printed on stdout once the window has painted, when started by scripts/start.mjs (STRATA_LAUNCHER=1). */
export const READY_MARKER = 'strata:window-ready';

export interface AppPaths {
  preload: string;
  indexHtml: string;
  icon?: string;
}

export interface StartDeps {
  env: Record<string, string | undefined>;
  platform: NodeJS.Platform;
  paths: AppPaths;
  createService: (opts: ServiceOptions) => Service;
  exists: (file: string) => boolean;
  /** diagnostics (stderr) */
  log: (message: string) => void;
  /** one line on stdout */
  announce: (line: string) => void;
}

export interface RunningApp {
  dataDir: string;
  service: Service;
  window: () => BrowserWindowLike | null;
}

/** $STRATA_HOME when set, else Electron's per-user data directory. */
export function dataDirFor(env: Record<string, string | undefined>, userData: () => string): string {
  const home = env.STRATA_HOME;
  return home ? path.resolve(home) : userData();
}

/**
 * Starts the app. Resolves to null when this instance gives way to a running one or cannot start
 * (the reason is shown, and the process exits with 1).
 */
export async function startApp(electron: ElectronMain, deps: StartDeps): Promise<RunningApp | null> {
  const { app, BrowserWindow, ipcMain, dialog, Menu, session } = electron;
  const { env, log } = deps;
  const launched = env.STRATA_LAUNCHER === '1';

  const dataDir = dataDirFor(env, () => app.getPath('userData'));
  // With STRATA_HOME, Chromium's profile (and so the single-instance lock) lives there too: a run on
  // a scratch data dir neither touches nor waits for the user's own instance.
  if (env.STRATA_HOME) app.setPath('userData', path.join(dataDir, 'electron-profile'));

  if (!app.requestSingleInstanceLock()) {
    log('Strata is already running; its window has been brought to the front.');
    app.quit();
    return null;
  }

  let win: BrowserWindowLike | null = null;
  app.on('second-instance', () => {
    if (!win || win.isDestroyed()) return;
    if (win.isMinimized()) win.restore();
    win.focus();
  });
  app.on('web-contents-created', (_event, contents) => guardWebContents(contents, log));

  await app.whenReady();
  hardenSession(session.defaultSession, log);
  Menu.setApplicationMenu(Menu.buildFromTemplate(menuTemplate({ platform: deps.platform, appName: app.name || 'Strata', isPackaged: app.isPackaged })));

  let service: Service;
  try {
    const nativeBinding = resolveNativeBinding({ env, exists: deps.exists });
    service = deps.createService({ dataDir, mode: 'electron', nativeBinding, openImageDialog: createOpenImageDialog(dialog, () => win) });
  } catch (e) {
    const message = explainStartupError((e as Error)?.message ?? String(e), { bindingFromEnv: Boolean(env[BINDING_ENV]), isPackaged: app.isPackaged });
    log(`cannot start: ${message}`);
    // Started by `npm start`: it reports the failure and falls back to browser mode, so no modal box.
    if (!launched) dialog.showErrorBox('Strata cannot start', message);
    app.exit(1);
    return null;
  }

  const unregister = registerIpc(ipcMain, service, { indexHtml: deps.paths.indexHtml, log });
  const unsubscribe = forwardEvents(service, () => win?.webContents);

  const openWindow = () => {
    const icon = deps.paths.icon && deps.exists(deps.paths.icon) ? deps.paths.icon : undefined;
    const w = createMainWindow(BrowserWindow, { preload: deps.paths.preload, indexHtml: deps.paths.indexHtml, icon, log });
    if (launched) w.once('ready-to-show', () => deps.announce(READY_MARKER));
    w.on('closed', () => {
      if (win === w) win = null;
    });
    win = w;
  };
  openWindow();

  app.on('activate', () => {
    if (!win) openWindow();
  });
  app.on('window-all-closed', () => {
    if (deps.platform !== 'darwin') app.quit();
  });
  let closed = false;
  app.on('will-quit', (event) => {
    if (closed) return;
    closed = true;
    unsubscribe();
    unregister();
    // Strata's own storage daemons must stop with SIGTERM (so QEMU stores the bitmaps) before the
    // app goes: hold the quit until they have, then quit again.
    event?.preventDefault();
    void service.close().finally(() => app.quit());
  });

  return { dataDir, service, window: () => win };
}
