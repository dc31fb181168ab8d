// Electron transport of the contract: one ipcMain.handle per channel, each going through dispatch()
// (so every reply is {ok, result} or {ok: false, error: {code, message}}), and service events pushed
// to the window. A request is served only when it comes from the top frame of our own bundled
// renderer page; anything else (another origin, a sub-frame, a frame that has gone away) is refused
// without reaching the service.
import { CHANNELS, EVENTS, type Reply } from './core/contract.ts';
import { dispatch } from './core/dispatch.ts';
import type { Service } from './core/service.ts';
import type { IpcMainInvokeEventLike, IpcMainLike, WebContentsLike } from './electron-api.ts';
import { isOwnRendererUrl } from './window.ts';

type Log = (message: string) => void;

export const REFUSED_CODE = 'E_BAD_INPUT';

export function isTrustedSender(event: IpcMainInvokeEventLike, indexHtml: string): boolean {
  const frame = event?.senderFrame;
  if (!frame) return false;
  if (frame.parent) return false;
  return isOwnRendererUrl(frame.url, indexHtml);
}

export interface IpcOptions {
  /** absolute path of dist/renderer/index.html: the only page allowed to call */
  indexHtml: string;
  log?: Log;
}

/** Registers every channel; returns a function that removes them again. */
export function registerIpc(ipcMain: IpcMainLike, service: Service, opts: IpcOptions): () => void {
  const log = opts.log ?? (() => {});
  for (const channel of CHANNELS) {
    ipcMain.handle(channel, async (event, arg): Promise<Reply<unknown>> => {
      if (!isTrustedSender(event, opts.indexHtml)) {
        const from = event?.senderFrame ? event.senderFrame.url : 'a frame that no longer exists';
        log(`refused ${channel} from ${from}`);
        return { ok: false, error: { code: REFUSED_CODE, message: `request refused: ${channel} did not come from the Strata window` } };
      }
      return dispatch(service, channel, arg);
    });
  }
  return () => {
    for (const channel of CHANNELS) ipcMain.removeHandler(channel);
  };
}

const knownEvents = new Set<string>(EVENTS);

/** Sends every service event to the current window's webContents (if any); returns the unsubscribe. */
export function forwardEvents(service: Service, target: () => WebContentsLike | null | undefined): () => void {
  return service.subscribe((event, payload) => {
    if (!knownEvents.has(event)) return;
    const wc = target();
    if (!wc || wc.isDestroyed()) return;
    wc.send(event, payload);
  });
}
