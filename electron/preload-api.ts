// The object the preload exposes as window.strata: the contract's StrataApi plus pathForFile for
// drag and drop. Bundled into the sandboxed preload, so this file may import nothing at run time
// but the contract's plain CHANNELS/EVENTS arrays (the bundler inlines them); types only otherwise.
import { CHANNELS, EVENTS, type Channel, type EventName, type Events, type Reply, type StrataApi } from './core/contract.ts';
import type { IpcRendererLike, IpcRendererListener, WebUtilsLike } from './electron-api.ts';

export interface StrataBridge extends StrataApi {
  /** The absolute path of a File dropped on the page or picked by an <input type=file>. */
  pathForFile(file: File): string;
}

export function createStrataBridge(ipcRenderer: IpcRendererLike, webUtils: WebUtilsLike): StrataBridge {
  const channels = new Set<string>(CHANNELS);
  const events = new Set<string>(EVENTS);
  const bridge = {
    invoke(channel: Channel, arg: unknown): Promise<Reply<unknown>> {
      if (typeof channel !== 'string' || !channels.has(channel)) {
        return Promise.resolve({ ok: false, error: { code: 'E_BAD_INPUT', message: `unknown channel ${JSON.stringify(channel)}` } });
      }
      return ipcRenderer.invoke(channel, arg) as Promise<Reply<unknown>>;
    },
    on(event: EventName, listener: (payload: Events[EventName]) => void): () => void {
      if (typeof event !== 'string' || !events.has(event)) throw new TypeError(`unknown event ${JSON.stringify(event)}`);
      if (typeof listener !== 'function') throw new TypeError('listener must be a function');
      // The renderer never sees the IpcRendererEvent (it would hand out ipcRenderer.sender).
      const wrapped: IpcRendererListener = (_event, payload) => listener(payload as Events[EventName]);
      ipcRenderer.on(event, wrapped);
      let done = false;
      return () => {
        if (done) return;
        done = true;
        ipcRenderer.removeListener(event, wrapped);
      };
    },
    pathForFile(file: File): string {
      return webUtils.getPathForFile(file);
    },
  };
  return bridge as StrataBridge;
}
