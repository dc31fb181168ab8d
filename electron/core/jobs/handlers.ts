// Jobs: the block jobs of live connections, as each connection's one job engine tracks them.
import type { ConnectionManager } from '../connections/manager.ts';
import type { HandlersFor } from '../handlers.ts';
import type { jobArgs } from './contract.ts';

export function createJobHandlers({ connections }: { connections: ConnectionManager }): HandlersFor<typeof jobArgs> {
  return {
    'job:list': ({ connection }) => connections.jobs(connection),
    'job:start': ({ connection, spec }) => connections.startJob(connection, spec),
    'job:verb': ({ connection, id, verb, speed }) =>
      verb === 'set-speed' ? connections.jobVerb(connection, id, verb, { speed }) : connections.jobVerb(connection, id, verb),
  };
}
