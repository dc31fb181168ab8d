// Running a bitmap plan on a target: an offline image through Strata's own storage daemon, or a
// node of a running QEMU through its QMP socket. Journaled before the first command.
import path from 'node:path';
import { QmpClient, type QmpTraffic } from '../qmp/client.ts';
import { queryNamedNodes } from '../qmp/named-nodes.ts';
import { StorageDaemon, TOP_NODE } from '../daemon/storage-daemon.ts';
import { nodeStates, planBitmapOp, type BitmapOp, type BitmapPlan, type NodeState, type SourceRef } from './plan.ts';
import type { Operations, OperationRecord } from '../store/operations.ts';
import { StrataError } from '../errors.ts';

export type Target = { kind: 'image'; image: string } | { kind: 'socket'; socket: string; node: string };

/** A merge source as the user wrote it: NAME, or LAYER_PATH_OR_NODE:NAME. */
export type SourceSpec = { where: string | null; name: string };

export function parseSource(s: string): SourceSpec {
  const i = s.lastIndexOf(':');
  return i > 0 ? { where: s.slice(0, i), name: s.slice(i + 1) } : { where: null, name: s };
}

export type OpRequest =
  | Exclude<BitmapOp, { op: 'merge' }>
  | { op: 'merge'; target: string; sources: SourceSpec[] };

function resolveSources(specs: SourceSpec[], self: NodeState, all: NodeState[]): SourceRef[] {
  return specs.map((s) => {
    if (s.where === null) return { node: self.node, name: s.name };
    const byNode = all.find((n) => n.node === s.where);
    if (byNode) return { node: byNode.node, name: s.name };
    const file = path.resolve(s.where);
    // The format node (qcow2), not the protocol node (file) that shares its file name.
    const byFile = all.find((n) => n.file === file && n.driver !== 'file');
    if (!byFile) throw new StrataError('E_NO_LAYER', `${self.file}: '${s.where}' is neither a node nor a layer file open in this QEMU`, { file: self.file });
    return { node: byFile.node, name: s.name };
  });
}

export interface Session {
  qmp: QmpClient;
  node: string;
  /** true for Strata's own daemon on an offline image */
  embedded: boolean;
  close(): Promise<void>;
  log: OperationRecord['log'];
}

export async function openTarget(target: Target, opts: { runtimeDir: string; readOnly: boolean }): Promise<Session> {
  const log: OperationRecord['log'] = [];
  // The session is the operation's own: every line of it is the operation's log.
  const onTraffic = (t: QmpTraffic) => log.push(t.event ? { dir: t.dir, line: t.line, at: t.at, event: t.event } : { dir: t.dir, line: t.line, at: t.at });
  if (target.kind === 'image') {
    const d = await StorageDaemon.start({ image: target.image, runtimeDir: opts.runtimeDir, readOnly: opts.readOnly, onTraffic });
    return { qmp: d.qmp, node: TOP_NODE, embedded: true, log, close: async () => void (await d.stop()) };
  }
  const qmp = await QmpClient.connect(target.socket, { onTraffic });
  return { qmp, node: target.node, embedded: false, log, close: () => qmp.close() };
}

export async function planOn(s: Session, req: OpRequest, opts: { assumeWritable?: boolean } = {}): Promise<BitmapPlan> {
  const all = nodeStates(await queryNamedNodes(s.qmp));
  const self = all.find((n) => n.node === s.node);
  if (!self) throw new StrataError('E_BAD_INPUT', `no block node named '${s.node}' (nodes: ${all.map((n) => n.node).join(', ')})`);
  // A dry run on an offline image looks through a read-only daemon; the real run opens it read-write.
  const me = opts.assumeWritable ? { ...self, readOnly: false } : self;
  const op: BitmapOp = req.op === 'merge' ? { op: 'merge', target: req.target, sources: resolveSources(req.sources, me, all) } : req;
  return planBitmapOp(me, op, (n) => all.find((x) => x.node === n));
}

export interface RunResult {
  plan: BitmapPlan;
  operationId: number;
}

/**
 * Plan, journal and run on a session someone else owns (a live connection of the app: QEMU serves
 * one client per monitor, so the app's own client must be used). The transaction's lines are
 * tagged with the operation in that connection's traffic log.
 */
export async function runOnSession(s: Pick<Session, 'qmp' | 'node'>, req: OpRequest, ops: Operations, label: string): Promise<RunResult> {
  const plan = await planOn({ ...s, embedded: false, log: [], close: async () => {} }, req);
  const id = ops.begin(`bitmap-${req.op}`, label, plan.summary, plan.qmp);
  try {
    await s.qmp.execute('transaction', plan.qmp.arguments, { tag: { operation: id } });
    ops.finish(id, 'done', null);
    return { plan, operationId: id };
  } catch (e) {
    ops.finish(id, 'failed', (e as Error).message);
    throw e;
  }
}

/** Plan, journal, run as one transaction, and close the target (SIGTERM stores bitmaps). */
export async function runBitmapOp(target: Target, req: OpRequest, ops: Operations, runtimeDir: string): Promise<RunResult> {
  if (target.kind === 'image') {
    // QEMU rewrites bitmap metadata whenever it opens an image read-write, even if nothing is then
    // done: validate through a read-only look first, so a refused plan never writes the image.
    const look = await openTarget(target, { runtimeDir, readOnly: true });
    try {
      await planOn(look, req, { assumeWritable: true });
    } finally {
      await look.close();
    }
  }
  const s = await openTarget(target, { runtimeDir, readOnly: false });
  let id = -1;
  let plan: BitmapPlan | null = null;
  try {
    plan = await planOn(s, req);
    id = ops.begin(`bitmap-${req.op}`, plan.file, plan.summary, plan.qmp);
    await s.qmp.execute('transaction', plan.qmp.arguments);
    await s.close();
    ops.finish(id, 'done', null, s.log);
    return { plan, operationId: id };
  } catch (e) {
    await s.close().catch(() => {});
    if (id >= 0) ops.finish(id, 'failed', (e as Error).message, s.log);
    throw e;
  }
}
