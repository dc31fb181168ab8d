// The slice of Electron's API that the desktop shell uses, as plain structural types.
//
// Why not `import type ... from 'electron'`: the electron package is an optionalDependency and is
// absent wherever its binary cannot be downloaded (CI included), and `tsc` must pass there. These
// shapes follow Electron 38's documented signatures; main.ts and preload.ts cast the real module to
// them, and the tests pass hand-written fakes. Every module of the shell receives the API object it
// needs as an argument (dependency injection), so none of them imports 'electron' itself.

// ---- shared ----------------------------------------------------------------------------------

export interface ElectronEvent {
  preventDefault(): void;
  readonly defaultPrevented?: boolean;
}

// ---- main process ----------------------------------------------------------------------------

export interface WebFrameMainLike {
  readonly url: string;
  readonly parent: WebFrameMainLike | null;
}

export interface IpcMainInvokeEventLike {
  /** null when the frame has navigated away or been destroyed since it sent the message */
  readonly senderFrame: WebFrameMainLike | null;
  readonly sender?: { readonly id: number };
}

export interface IpcMainLike {
  handle(channel: string, listener: (event: IpcMainInvokeEventLike, ...args: unknown[]) => unknown): void;
  removeHandler(channel: string): void;
}

export interface HeadersReceivedDetails {
  url: string;
  resourceType?: string;
  responseHeaders?: Record<string, string[] | string>;
}

export interface HeadersReceivedResponse {
  cancel?: boolean;
  responseHeaders?: Record<string, string[] | string>;
}

export interface WebRequestLike {
  onHeadersReceived(listener: (details: HeadersReceivedDetails, callback: (response: HeadersReceivedResponse) => void) => void): void;
}

export interface SessionLike {
  readonly webRequest: WebRequestLike;
  setPermissionRequestHandler(
    handler: ((webContents: unknown, permission: string, callback: (granted: boolean) => void, details?: unknown) => void) | null,
  ): void;
  setPermissionCheckHandler(handler: ((webContents: unknown, permission: string, requestingOrigin?: string, details?: unknown) => boolean) | null): void;
}

export interface WindowOpenDetails {
  url: string;
}

export type WindowOpenResponse = { action: 'deny' } | { action: 'allow' };

/** will-navigate / will-frame-navigate / will-redirect / will-attach-webview: Electron passes an event (with .url since 25) and the url. */
export type NavigationListener = (event: ElectronEvent & { url?: string }, url?: string) => void;

export interface WebContentsLike {
  readonly id: number;
  readonly session?: SessionLike;
  send(channel: string, ...args: unknown[]): void;
  isDestroyed(): boolean;
  setWindowOpenHandler(handler: (details: WindowOpenDetails) => WindowOpenResponse): void;
  on(event: 'will-navigate' | 'will-frame-navigate' | 'will-redirect' | 'will-attach-webview', listener: NavigationListener): unknown;
  on(event: string, listener: (...args: never[]) => void): unknown;
}

export interface BrowserWindowOptions {
  width?: number;
  height?: number;
  minWidth?: number;
  minHeight?: number;
  show?: boolean;
  title?: string;
  icon?: string;
  backgroundColor?: string;
  autoHideMenuBar?: boolean;
  webPreferences: {
    preload: string;
    contextIsolation: boolean;
    sandbox: boolean;
    nodeIntegration: boolean;
    nodeIntegrationInWorker: boolean;
    nodeIntegrationInSubFrames: boolean;
    webSecurity: boolean;
    allowRunningInsecureContent: boolean;
    webviewTag: boolean;
    navigateOnDragDrop: boolean;
    spellcheck: boolean;
    experimentalFeatures: boolean;
  };
}

export interface BrowserWindowLike {
  readonly webContents: WebContentsLike;
  loadFile(file: string): Promise<void>;
  show(): void;
  focus(): void;
  restore(): void;
  isMinimized(): boolean;
  isDestroyed(): boolean;
  once(event: 'ready-to-show', listener: () => void): unknown;
  on(event: 'closed', listener: () => void): unknown;
}

export interface BrowserWindowCtor {
  new (options: BrowserWindowOptions): BrowserWindowLike;
}

export interface FileFilter {
  name: string;
  extensions: string[];
}

export interface OpenDialogOptions {
  title?: string;
  buttonLabel?: string;
  properties: Array<'openFile' | 'openDirectory' | 'multiSelections' | 'showHiddenFiles' | 'dontAddToRecent'>;
  filters: FileFilter[];
}

export interface DialogLike {
  showOpenDialog(window: BrowserWindowLike, options: OpenDialogOptions): Promise<{ canceled: boolean; filePaths: string[] }>;
  showOpenDialog(options: OpenDialogOptions): Promise<{ canceled: boolean; filePaths: string[] }>;
  showErrorBox(title: string, content: string): void;
}

export type MenuRole =
  | 'about'
  | 'services'
  | 'hide'
  | 'hideOthers'
  | 'unhide'
  | 'quit'
  | 'close'
  | 'undo'
  | 'redo'
  | 'cut'
  | 'copy'
  | 'paste'
  | 'selectAll'
  | 'reload'
  | 'forceReload'
  | 'toggleDevTools'
  | 'resetZoom'
  | 'zoomIn'
  | 'zoomOut'
  | 'togglefullscreen'
  | 'minimize'
  | 'zoom'
  | 'front'
  | 'window'
  | 'appMenu'
  | 'fileMenu'
  | 'editMenu'
  | 'viewMenu'
  | 'windowMenu';

export interface MenuItemTemplate {
  label?: string;
  role?: MenuRole;
  type?: 'separator' | 'submenu' | 'normal';
  accelerator?: string;
  click?: () => void;
  submenu?: MenuItemTemplate[];
}

export interface MenuStatic {
  buildFromTemplate(template: MenuItemTemplate[]): unknown;
  setApplicationMenu(menu: unknown): void;
}

export interface AppLike {
  readonly isPackaged: boolean;
  name: string;
  requestSingleInstanceLock(): boolean;
  getPath(name: 'userData' | 'home' | 'temp'): string;
  setPath(name: 'userData' | 'sessionData', value: string): void;
  getAppPath(): string;
  getVersion(): string;
  whenReady(): Promise<void>;
  quit(): void;
  exit(code?: number): void;
  on(event: 'second-instance' | 'window-all-closed' | 'activate', listener: () => void): unknown;
  on(event: 'will-quit', listener: (event?: { preventDefault(): void }) => void): unknown;
  on(event: 'web-contents-created', listener: (event: unknown, contents: WebContentsLike) => void): unknown;
}

/** What main.ts takes from require('electron'). */
export interface ElectronMain {
  app: AppLike;
  BrowserWindow: BrowserWindowCtor;
  ipcMain: IpcMainLike;
  dialog: DialogLike;
  Menu: MenuStatic;
  session: { readonly defaultSession: SessionLike };
}

// ---- preload (sandboxed renderer) ------------------------------------------------------------

export type IpcRendererListener = (event: unknown, ...args: unknown[]) => void;

export interface IpcRendererLike {
  invoke(channel: string, ...args: unknown[]): Promise<unknown>;
  on(channel: string, listener: IpcRendererListener): unknown;
  removeListener(channel: string, listener: IpcRendererListener): unknown;
}

export interface WebUtilsLike {
  getPathForFile(file: unknown): string;
}

export interface ContextBridgeLike {
  exposeInMainWorld(key: string, api: unknown): void;
}

/** What preload.ts takes from require('electron') (the only module a sandboxed preload may require). */
export interface ElectronPreload {
  contextBridge: ContextBridgeLike;
  ipcRenderer: IpcRendererLike;
  webUtils: WebUtilsLike;
}
