// The one application window: sandboxed, context-isolated renderer without Node, loading the bundled
// dist/renderer/index.html from disk. The security settings are spelled out even where they match
// Electron's defaults so that a future default change (or a careless edit) shows up in the tests.
import { pathToFileURL } from 'node:url';
import type { BrowserWindowCtor, BrowserWindowLike, BrowserWindowOptions } from './electron-api.ts';
import { guardWebContents } from './security.ts';

export interface MainWindowOptions {
  /** absolute path of dist/electron/preload.cjs */
  preload: string;
  /** absolute path of dist/renderer/index.html */
  indexHtml: string;
  /** window icon (Linux/Windows); omitted when the file is not there */
  icon?: string;
  log?: (message: string) => void;
}

export function windowOptions(opts: MainWindowOptions): BrowserWindowOptions {
  return {
    width: 1280,
    height: 820,
    minWidth: 800,
    minHeight: 520,
    show: false,
    title: 'Strata',
    backgroundColor: '#0f172a',
    ...(opts.icon ? { icon: opts.icon } : {}),
    webPreferences: {
      preload: opts.preload,
      contextIsolation: true,
      sandbox: true,
      nodeIntegration: false,
      nodeIntegrationInWorker: false,
      nodeIntegrationInSubFrames: false,
      webSecurity: true,
      allowRunningInsecureContent: false,
      webviewTag: false,
      // dropping a file on the window must reach the renderer's drop handler, not open the file
      navigateOnDragDrop: false,
      spellcheck: false,
      experimentalFeatures: false,
    },
  };
}

export function createMainWindow(BrowserWindow: BrowserWindowCtor, opts: MainWindowOptions): BrowserWindowLike {
  const win = new BrowserWindow(windowOptions(opts));
  guardWebContents(win.webContents, opts.log);
  win.once('ready-to-show', () => win.show());
  win.loadFile(opts.indexHtml).catch((e: unknown) => opts.log?.(`could not load ${opts.indexHtml}: ${(e as Error)?.message ?? e}`));
  return win;
}

function comparablePath(fileUrl: string): string | null {
  let u: URL;
  try {
    u = new URL(fileUrl);
  } catch {
    return null;
  }
  if (u.protocol !== 'file:' || (u.host !== '' && u.host !== 'localhost')) return null;
  const p = decodeURIComponent(u.pathname);
  return process.platform === 'win32' ? p.toLowerCase() : p;
}

/** True when url is our own renderer page (query and hash ignored). Anything else is foreign. */
export function isOwnRendererUrl(url: string, indexHtml: string): boolean {
  const got = comparablePath(url);
  return got !== null && got === comparablePath(pathToFileURL(indexHtml).href);
}
