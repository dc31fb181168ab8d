// Connections: list, add a VM's socket (or a folder of them), open an image in Strata's own daemon,
// restart, close, a connection's block graph and its QMP traffic.
import type { ConnectionManager } from './manager.ts';
import type { HandlersFor } from '../handlers.ts';
import type { connectionArgs } from './contract.ts';

export function createConnectionHandlers({ connections }: { connections: ConnectionManager }): HandlersFor<typeof connectionArgs> {
  return {
    'connection:list': () => connections.list(),
    'connection:add-socket': ({ path }) => connections.addSocket(path),
    'connection:scan-folder': ({ path }) => connections.scanFolder(path),
    'connection:open-image': ({ image, readOnly }) => connections.openImage(image, readOnly),
    'connection:restart': ({ id }) => connections.restart(id),
    'connection:close': ({ id }) => connections.close(id),
    'connection:graph': ({ id }) => connections.graph(id),
    'connection:traffic': ({ id, limit }) => connections.traffic(id, limit),
  };
}
