// The one door from the renderer to the core: picks the transport once at start (window.strata from
// the Electron preload, else a WebSocket to the page's own server) and offers a typed call() that
// throws ApiError on {ok:false}. Stores use call(); only the event bridge uses the transport's on().
import type { ArgOf, Channel, ResultOf } from '../../../electron/core/contract';
import { ApiError } from './api-error';
import { IpcTransport } from './ipc-transport';
import { WsTransport } from './ws-transport';
import type { Transport } from './transport';

let transport: Transport | null = null;

function createTransport(): Transport {
  if (window.strata) return new IpcTransport(window.strata);
  const token = new URLSearchParams(location.search).get('token');
  if (location.protocol !== 'http:' && location.protocol !== 'https:') {
    return new WsTransport(null, 'this page was opened outside the Strata app and its browser-mode server');
  }
  if (!token) {
    return new WsTransport(null, 'the address has no access token: open the link printed by `strata --web` (it ends in ?token=…)');
  }
  // Same host:port as the page; the server only accepts its own token.
  return new WsTransport(`ws://${location.host}/ws?token=${encodeURIComponent(token)}`);
}

export function getTransport(): Transport {
  transport ??= createTransport();
  return transport;
}

/** Channels whose argument is void may be called without one. */
type CallArgs<C extends Channel> = ArgOf<C> extends void ? [arg?: undefined] : [arg: ArgOf<C>];

export async function call<C extends Channel>(channel: C, ...args: CallArgs<C>): Promise<ResultOf<C>> {
  const reply = await getTransport().invoke(channel, args[0] as ArgOf<C>);
  if (!reply.ok) throw new ApiError(reply.error.code, reply.error.message);
  return reply.result;
}
