// The one door into the service for every transport: unknown channels are refused, every argument
// is checked against its channel's schema (E_BAD_INPUT naming the field, before any handler runs),
// and every outcome becomes {ok, result} or {ok: false, error: {code, message}} (classes do not
// cross IPC).
import { CHANNELS, type Channel, type Reply } from './contract.ts';
import type { Service } from './service.ts';
import { toWireError } from './errors.ts';
import { parseArg, type ArgSchema } from './schema.ts';

const known = new Set<string>(CHANNELS);

export function isChannel(c: unknown): c is Channel {
  return typeof c === 'string' && known.has(c);
}

export async function dispatch(service: Service, channel: unknown, arg: unknown): Promise<Reply<unknown>> {
  if (!isChannel(channel)) return { ok: false, error: { code: 'E_BAD_INPUT', message: `unknown channel ${JSON.stringify(channel)}` } };
  try {
    const schema = service.schemas?.[channel] as ArgSchema<unknown> | undefined;
    const handler = service.handlers[channel] as (a: unknown) => unknown;
    return { ok: true, result: (await handler(schema ? parseArg(channel, schema, arg) : arg)) ?? null };
  } catch (e) {
    return { ok: false, error: toWireError(e) };
  }
}
