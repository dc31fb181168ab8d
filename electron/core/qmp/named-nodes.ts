// query-named-block-nodes, guarded against QEMU 7.2's crash while a finished block-stream job
// awaits dismissal (the rule: jobs/states.ts holdsBlockGraph). query-jobs is safe, so it is asked
// first; the window between the two commands stays, but QEMU runs both in its main loop, one after
// the other.
import type { QmpClient } from './client.ts';
import { StrataError } from '../errors.ts';
import { holdsBlockGraph } from '../jobs/states.ts';

export async function queryNamedNodes(qmp: QmpClient, where = qmp.path): Promise<any[]> {
  const jobs = await qmp.execute<{ id: string; type: string; status: string }[]>('query-jobs');
  const held = jobs.find((j) => holdsBlockGraph(j.type, j.status));
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

/**
 * The file a qcow2 node reads, as a plain name. A node whose backing QEMU attached after it was
 * opened (blockdev-snapshot onto an overlay added with `backing: null`, libvirt's way) shows a
 * `json:{…}` pseudo-filename naming both; its own protocol child's file name is in there as
 * `file.filename` when that child is a plain file. Null when there is no such name.
 */
export function plainFileOf(node: any): string | null {
  const f = node?.file;
  if (typeof f !== 'string') return null;
  if (!f.startsWith('json:')) return f;
  try {
    const j = JSON.parse(f.slice(5));
    return j?.file?.driver === 'file' && typeof j.file.filename === 'string' ? j.file.filename : null;
  } catch {
    return null;
  }
}
