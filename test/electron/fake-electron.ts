// Hand-written stand-ins for the parts of Electron the shell uses (electron/electron-api.ts), recording
// what the code under test does with them. Not a test file itself (only *.test.ts are).
import type {
  BrowserWindowOptions,
  ElectronEvent,
  ElectronMain,
  ElectronPreload,
  HeadersReceivedDetails,
  HeadersReceivedResponse,
  IpcMainInvokeEventLike,
  IpcRendererListener,
  MenuItemTemplate,
  OpenDialogOptions,
  WindowOpenDetails,
  WindowOpenResponse,
} from '../../electron/electron-api.ts';

type Listener = (...args: any[]) => unknown;

class Emitter {
  readonly listeners = new Map<string, Listener[]>();
  on(event: string, l: Listener): this {
    this.listeners.set(event, [...(this.listeners.get(event) ?? []), l]);
    return this;
  }
  once(event: string, l: Listener): this {
    const w: Listener = (...a) => {
      this.off(event, w);
      return l(...a);
    };
    return this.on(event, w);
  }
  off(event: string, l: Listener): this {
    this.listeners.set(event, (this.listeners.get(event) ?? []).filter((x) => x !== l));
    return this;
  }
  emit(event: string, ...args: unknown[]): void {
    for (const l of this.listeners.get(event) ?? []) l(...args);
  }
  count(event: string): number {
    return this.listeners.get(event)?.length ?? 0;
  }
}

export class FakeEvent implements ElectronEvent {
  defaultPrevented = false;
  constructor(readonly url?: string) {}
  preventDefault(): void {
    this.defaultPrevented = true;
  }
}

let nextId = 1;

export class FakeWebContents extends Emitter {
  readonly id = nextId++;
  readonly sent: { channel: string; args: unknown[] }[] = [];
  windowOpenHandler: ((d: WindowOpenDetails) => WindowOpenResponse) | null = null;
  destroyed = false;
  send(channel: string, ...args: unknown[]): void {
    this.sent.push({ channel, args });
  }
  isDestroyed(): boolean {
    return this.destroyed;
  }
  setWindowOpenHandler(h: (d: WindowOpenDetails) => WindowOpenResponse): void {
    this.windowOpenHandler = h;
  }
  /** What a renderer-initiated navigation to url ends in: true when it was prevented. */
  navigate(url: string, kind: 'will-navigate' | 'will-frame-navigate' | 'will-redirect' | 'will-attach-webview' = 'will-navigate'): boolean {
    const ev = new FakeEvent(url);
    this.emit(kind, ev, url);
    return ev.defaultPrevented;
  }
}

export class FakeBrowserWindow extends Emitter {
  static instances: FakeBrowserWindow[] = [];
  readonly webContents = new FakeWebContents();
  loaded: string | null = null;
  shown = false;
  focused = 0;
  minimized = false;
  destroyed = false;
  constructor(readonly options: BrowserWindowOptions) {
    super();
    FakeBrowserWindow.instances.push(this);
  }
  loadFile(file: string): Promise<void> {
    this.loaded = file;
    return Promise.resolve();
  }
  show(): void {
    this.shown = true;
  }
  focus(): void {
    this.focused++;
  }
  restore(): void {
    this.minimized = false;
  }
  isMinimized(): boolean {
    return this.minimized;
  }
  isDestroyed(): boolean {
    return this.destroyed;
  }
  close(): void {
    this.destroyed = true;
    this.webContents.destroyed = true;
    this.emit('closed');
  }
}

export function frame(url: string, parent: { url: string; parent: null } | null = null): IpcMainInvokeEventLike {
  return { senderFrame: { url, parent }, sender: { id: 1 } };
}

export class FakeIpcMain {
  readonly handlers = new Map<string, (event: IpcMainInvokeEventLike, ...args: unknown[]) => unknown>();
  handle(channel: string, listener: (event: IpcMainInvokeEventLike, ...args: unknown[]) => unknown): void {
    if (this.handlers.has(channel)) throw new Error(`Attempted to register a second handler for '${channel}'`);
    this.handlers.set(channel, listener);
  }
  removeHandler(channel: string): void {
    this.handlers.delete(channel);
  }
  /** What ipcRenderer.invoke(channel, arg) would resolve to, from a frame at url. */
  async invoke(channel: string, event: IpcMainInvokeEventLike, arg?: unknown): Promise<unknown> {
    const h = this.handlers.get(channel);
    if (!h) throw new Error(`No handler registered for '${channel}'`);
    return h(event, arg);
  }
}

export class FakeSession {
  headersListener: ((d: HeadersReceivedDetails, cb: (r: HeadersReceivedResponse) => void) => void) | null = null;
  permissionRequest: ((wc: unknown, permission: string, cb: (granted: boolean) => void, details?: unknown) => void) | null = null;
  permissionCheck: ((wc: unknown, permission: string, origin?: string, details?: unknown) => boolean) | null = null;
  readonly webRequest = {
    onHeadersReceived: (l: (d: HeadersReceivedDetails, cb: (r: HeadersReceivedResponse) => void) => void) => {
      this.headersListener = l;
    },
  };
  setPermissionRequestHandler(h: FakeSession['permissionRequest']): void {
    this.permissionRequest = h;
  }
  setPermissionCheckHandler(h: FakeSession['permissionCheck']): void {
    this.permissionCheck = h;
  }
  /** The headers a response ends up with. */
  respond(url: string, responseHeaders: Record<string, string[] | string> = {}): HeadersReceivedResponse {
    let out: HeadersReceivedResponse | null = null;
    this.headersListener?.({ url, resourceType: 'mainFrame', responseHeaders }, (r) => {
      out = r;
    });
    if (!out) throw new Error('onHeadersReceived listener did not call back');
    return out;
  }
  /** Whether a permission request is granted. */
  request(permission: string): boolean | null {
    let granted: boolean | null = null;
    this.permissionRequest?.({}, permission, (g) => {
      granted = g;
    });
    return granted;
  }
}

export class FakeApp extends Emitter {
  isPackaged = false;
  name = 'Strata';
  lockGranted = true;
  quitCalls = 0;
  exitCode: number | null = null;
  readonly paths = new Map<string, string>([['userData', '/home/u/.config/Strata']]);
  private readyResolve!: () => void;
  readonly ready = new Promise<void>((r) => (this.readyResolve = r));
  requestSingleInstanceLock(): boolean {
    return this.lockGranted;
  }
  getPath(name: string): string {
    return this.paths.get(name) ?? `/fake/${name}`;
  }
  setPath(name: string, value: string): void {
    this.paths.set(name, value);
  }
  getAppPath(): string {
    return '/fake/app';
  }
  getVersion(): string {
    return '0.0.0-test';
  }
  whenReady(): Promise<void> {
    return this.ready;
  }
  fireReady(): void {
    this.readyResolve();
  }
  quit(): void {
    this.quitCalls++;
    this.emit('will-quit');
  }
  exit(code = 0): void {
    this.exitCode = code;
  }
}

export class FakeDialog {
  readonly openCalls: { window: unknown; options: OpenDialogOptions }[] = [];
  readonly errorBoxes: { title: string; content: string }[] = [];
  result = { canceled: false, filePaths: ['/images/vm.qcow2'] };
  showOpenDialog(a: unknown, b?: OpenDialogOptions): Promise<{ canceled: boolean; filePaths: string[] }> {
    if (b) this.openCalls.push({ window: a, options: b });
    else this.openCalls.push({ window: null, options: a as OpenDialogOptions });
    return Promise.resolve(this.result);
  }
  showErrorBox(title: string, content: string): void {
    this.errorBoxes.push({ title, content });
  }
}

export class FakeMenu {
  applied: { template: MenuItemTemplate[] } | null = null;
  buildFromTemplate(template: MenuItemTemplate[]): { template: MenuItemTemplate[] } {
    return { template };
  }
  setApplicationMenu(menu: unknown): void {
    this.applied = menu as { template: MenuItemTemplate[] };
  }
}

export interface FakeMain {
  electron: ElectronMain;
  app: FakeApp;
  ipcMain: FakeIpcMain;
  session: FakeSession;
  dialog: FakeDialog;
  menu: FakeMenu;
  windows: FakeBrowserWindow[];
}

export function fakeMain(): FakeMain {
  const app = new FakeApp();
  const ipcMain = new FakeIpcMain();
  const session = new FakeSession();
  const dialog = new FakeDialog();
  const menu = new FakeMenu();
  const windows: FakeBrowserWindow[] = [];
  class BrowserWindow extends FakeBrowserWindow {
    constructor(o: BrowserWindowOptions) {
      super(o);
      windows.push(this);
    }
  }
  const electron = {
    app,
    BrowserWindow,
    ipcMain,
    dialog,
    Menu: menu,
    session: { defaultSession: session },
  } as unknown as ElectronMain;
  return { electron, app, ipcMain, session, dialog, menu, windows };
}

// ---- renderer side --------------------------------------------------------------------------

export class FakeIpcRenderer {
  readonly invoked: { channel: string; args: unknown[] }[] = [];
  readonly listeners = new Map<string, IpcRendererListener[]>();
  reply: unknown = { ok: true, result: 'pong' };
  invoke(channel: string, ...args: unknown[]): Promise<unknown> {
    this.invoked.push({ channel, args });
    return Promise.resolve(this.reply);
  }
  on(channel: string, l: IpcRendererListener): this {
    this.listeners.set(channel, [...(this.listeners.get(channel) ?? []), l]);
    return this;
  }
  removeListener(channel: string, l: IpcRendererListener): this {
    this.listeners.set(channel, (this.listeners.get(channel) ?? []).filter((x) => x !== l));
    return this;
  }
  /** What main's webContents.send(channel, payload) does on this side. */
  deliver(channel: string, payload: unknown): void {
    const ipcEvent = { sender: this, senderId: 0, ports: [] };
    for (const l of this.listeners.get(channel) ?? []) l(ipcEvent, payload);
  }
}

export function fakePreload(): { electron: ElectronPreload; ipcRenderer: FakeIpcRenderer; exposed: Map<string, unknown>; pathsAsked: unknown[] } {
  const ipcRenderer = new FakeIpcRenderer();
  const exposed = new Map<string, unknown>();
  const pathsAsked: unknown[] = [];
  const electron: ElectronPreload = {
    contextBridge: {
      exposeInMainWorld(key, api) {
        if (exposed.has(key)) throw new Error(`Cannot bind an API on top of an existing property on the window object: ${key}`);
        exposed.set(key, api);
      },
    },
    ipcRenderer,
    webUtils: {
      getPathForFile(file) {
        pathsAsked.push(file);
        return '/dropped/disk.qcow2';
      },
    },
  };
  return { electron, ipcRenderer, exposed, pathsAsked };
}
