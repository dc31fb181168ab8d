// What every feature's handlers are: one function per channel, taking the argument dispatch()
// validated against the channel's schema (so it is typed, normalized and contains no validation).
import type { ArgOf, Channel, EventName, Events, ResultOf } from './contract.ts';

export type Handlers = { [C in Channel]: (arg: ArgOf<C>) => Promise<ResultOf<C>> | ResultOf<C> };
/** A feature's share of Handlers: the channels its contract declares. */
export type HandlersFor<A extends Record<string, unknown>> = Pick<Handlers, Extract<keyof A, Channel>>;
export type EventListener = <E extends EventName>(event: E, payload: Events[E]) => void;
