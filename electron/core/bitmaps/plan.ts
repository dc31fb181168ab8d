// Bitmap changes as plans: validated against the node's current state, turned into one QMP
// `transaction` (atomic: QEMU applies every action or none), shown to the user before anything runs.
import { StrataError } from '../errors.ts';

export interface LiveBitmap {
  name?: string;
  recording: boolean;
  persistent: boolean;
  busy: boolean;
  granularity: number;
  count: number;
  inconsistent?: boolean;
}

/** What planning needs to know about a node (from query-named-block-nodes). */
export interface NodeState {
  node: string;
  file: string;
  driver: string;
  readOnly: boolean;
  bitmaps: LiveBitmap[];
}

export type SourceRef = { node: string; name: string };

export type BitmapOp =
  | { op: 'add'; name: string; granularity?: number; persistent: boolean; disabled: boolean }
  | { op: 'remove' | 'enable' | 'disable' | 'clear'; name: string }
  | { op: 'merge'; target: string; sources: SourceRef[] };

export interface TransactionAction {
  type: string;
  data: Record<string, unknown>;
}

export interface BitmapPlan {
  summary: string;
  node: string;
  file: string;
  actions: TransactionAction[];
  /** the exact command Strata will send */
  qmp: { execute: 'transaction'; arguments: { actions: TransactionAction[] } };
}

function refuse(file: string, msg: string): never {
  throw new StrataError('E_BAD_INPUT', `${file}: ${msg}`, { file });
}

function existing(n: NodeState, name: string): LiveBitmap {
  const b = n.bitmaps.find((x) => x.name === name);
  if (!b) refuse(n.file, `no bitmap named '${name}' (it has: ${n.bitmaps.map((x) => x.name).filter(Boolean).join(', ') || 'none'})`);
  return b;
}

function notBusy(n: NodeState, b: LiveBitmap): void {
  if (b.busy) refuse(n.file, `bitmap '${b.name}' is busy (an export or a job is using it)`);
}

/** `nodes` resolves merge sources on other nodes; the target node is `n`. */
export function planBitmapOp(n: NodeState, op: BitmapOp, nodes: (node: string) => NodeState | undefined = () => undefined): BitmapPlan {
  const actions: TransactionAction[] = [];
  let summary: string;
  switch (op.op) {
    case 'add': {
      if (!/^[^\0]{1,1023}$/.test(op.name)) refuse(n.file, 'a bitmap name is 1 to 1023 characters');
      if (n.bitmaps.some((b) => b.name === op.name)) refuse(n.file, `a bitmap named '${op.name}' already exists`);
      if (op.granularity !== undefined) {
        const g = op.granularity;
        if (!Number.isInteger(g) || g < 512 || g > 2 ** 31 || (g & (g - 1)) !== 0) refuse(n.file, `granularity ${g}: a power of two from 512 B to 2 GiB`);
      }
      if (op.persistent && n.readOnly) {
        // QEMU accepts this and silently loses the bitmap when the node closes.
        refuse(n.file, `the node '${n.node}' is read-only: a persistent bitmap would be accepted by QEMU and silently lost at close`);
      }
      const data: Record<string, unknown> = { node: n.node, name: op.name, persistent: op.persistent };
      if (op.granularity !== undefined) data.granularity = op.granularity;
      if (op.disabled) data.disabled = true;
      actions.push({ type: 'block-dirty-bitmap-add', data });
      summary = `add ${op.persistent ? 'persistent' : 'transient'} bitmap '${op.name}'${op.disabled ? ' (disabled)' : ''} to ${n.file}`;
      break;
    }
    case 'remove':
    case 'enable':
    case 'disable':
    case 'clear': {
      const b = existing(n, op.name);
      notBusy(n, b);
      if (op.op !== 'clear' && b.persistent && n.readOnly) refuse(n.file, `the node '${n.node}' is read-only: the change would not be stored`);
      if (op.op === 'enable' && b.recording) refuse(n.file, `bitmap '${op.name}' is already recording`);
      if (op.op === 'disable' && !b.recording) refuse(n.file, `bitmap '${op.name}' is already disabled`);
      actions.push({ type: `block-dirty-bitmap-${op.op}`, data: { node: n.node, name: op.name } });
      summary = `${op.op} bitmap '${op.name}' in ${n.file}`;
      break;
    }
    case 'merge': {
      const t = existing(n, op.target);
      notBusy(n, t);
      if (op.sources.length === 0) refuse(n.file, 'merge needs at least one source bitmap');
      const bitmaps = op.sources.map((s) => {
        const sn = s.node === n.node ? n : nodes(s.node);
        if (!sn) refuse(n.file, `no node '${s.node}' for source bitmap '${s.name}'`);
        existing(sn, s.name);
        return s.node === n.node ? s.name : { node: s.node, name: s.name };
      });
      actions.push({ type: 'block-dirty-bitmap-merge', data: { node: n.node, target: op.target, bitmaps } });
      // Name other layers by file: QEMU's generated node names (#block123) change from run to run.
      const where = (s: SourceRef) => (s.node === n.node ? s.name : `${nodes(s.node)?.file ?? s.node}:${s.name}`);
      summary = `merge ${op.sources.map(where).join(', ')} into '${op.target}' in ${n.file}`;
      break;
    }
  }
  return { summary, node: n.node, file: n.file, actions, qmp: { execute: 'transaction', arguments: { actions } } };
}

/** NodeState of every named node, from `query-named-block-nodes {flat: true}`. */
export function nodeStates(nodes: any[]): NodeState[] {
  return nodes.map((x) => ({
    node: x['node-name'],
    file: x.file,
    driver: x.drv,
    readOnly: !!x.ro,
    bitmaps: (x['dirty-bitmaps'] ?? []) as LiveBitmap[],
  }));
}
