// query-named-block-nodes, guarded. QEMU 7.2 crashes (SIGSEGV) when asked for its named block
// nodes while a block-stream job has finished (waiting, pending, aborting or concluded) but is not
// yet dismissed: the node the stream removed is still referenced. Measured on Debian's 7.2 daemon.
// query-jobs is safe, so it is asked first; the window between the two commands stays, but QEMU
// runs both in its main loop, one after the other.
import type { QmpClient } from './client.ts';
import { StrataError } from '../errors.ts';

const FINISHED = new Set(['waiting', 'pending', 'aborting', 'concluded']);

export async function queryNamedNodes(qmp: QmpClient, where = qmp.path): Promise<any[]> {
  const jobs = await qmp.execute<{ id: string; type: string; status: string }[]>('query-jobs');
  const held = jobs.find((j) => j.type === 'stream' && FINISHED.has(j.status));
  if (held) {
    throw new StrataError(
      'E_BUSY',
      `${where}: the block-stream job '${held.id}' has finished (${held.status}) and waits to be dismissed; QEMU 7.2 crashes if asked for its block nodes until then: dismiss the job first`,
      { file: where },
    );
  }
  return qmp.execute<any[]>('query-named-block-nodes', { flat: true });
}

/** A bitmap as query-named-block-nodes shows it. */
export interface NodeBitmap {
  name: string;
  granularity: number;
  recording: boolean;
  persistent: boolean;
  busy: boolean;
  inconsistent: boolean;
  /** dirty bytes, QEMU's count */
  count: number;
}

/**
 * A node's named bitmaps in creation order: QEMU lists them newest first (those it loaded at open in
 * directory order, then each added one in front; measured on 7.2), so creation order is the reverse.
 */
export function nodeBitmaps(node: any): NodeBitmap[] {
  return ((node?.['dirty-bitmaps'] ?? []) as any[])
    .filter((b) => typeof b.name === 'string')
    .map((b) => ({
      name: b.name,
      granularity: b.granularity,
      recording: b.recording === true,
      persistent: b.persistent === true,
      busy: b.busy === true,
      inconsistent: b.inconsistent === true,
      count: typeof b.count === 'number' ? b.count : 0,
    }))
    .reverse();
}
