// A live snapshot that keeps the checkpoints: a new qcow2 overlay on the layer a running QEMU writes,
// and in the same QMP transaction as the switch-over the checkpoint bitmaps in it (libvirt's recipe:
// a persistent recording bitmap of the same name and granularity for each valid recording bitmap of
// the old top, and optionally a new checkpoint). Measured on QEMU 7.2 (qemu-storage-daemon):
//
// - block-dirty-bitmap-add in a transaction needs its node to exist when the transaction starts, so
//   the overlay is opened first (blockdev-add with `backing: null`: its header's backing file is the
//   old top, which that QEMU holds), then one transaction attaches it (blockdev-snapshot) and adds
//   the bitmaps on it. Writes before the transaction land in the old top (its bitmaps take them),
//   writes after it in the overlay (its new bitmaps take them): none is untracked.
// - The old top is reopened read-only by blockdev-snapshot and QEMU stores its bitmaps then (they
//   read back recording and not in-use on disk); they stay as they are, as libvirt leaves them: the
//   checkpoint math reads every layer's bitmaps, and a backing layer whose bitmaps were disabled
//   would make the checkpoints unknown (checkpoints.ts).
// - The overlay's header must name the old top by the very file name QEMU gives that node (an
//   absolute path): with a relative backing name QEMU calls the attached overlay by a json:{...}
//   pseudo-filename, which the backup and the other live commands cannot use.
//
// The plan (kind 'snapshot-live') is journaled before its first step and run by plans/runner.ts;
// a Strata killed meanwhile is finished or rolled back at the next `strata snapshot --socket` run or
// app start: until the transaction took effect the overlay is closed and its file removed.
import fs from 'node:fs';
import path from 'node:path';
import type { QmpClient } from '../qmp/client.ts';
import { blockGraph } from '../connections/block-graph.ts';
import { readHeldLayer } from '../connections/live-layers.ts';
import { ChainContents } from '../checkpoints.ts';
import { withChain } from '../qcow2/chain.ts';
import type { Db } from '../store/db.ts';
import type { RunContext } from '../plans/runner.ts';
import { liveOperation, topNode, type LiveOpResult } from './live-op.ts';
import type { NewPlan, QmpCall, StepSpec } from '../plans/types.ts';
import { shapeSnapshot, REMOVE_COMMAND, type SnapshotPlan } from './snapshot.ts';
import { StrataError } from '../errors.ts';

export const LIVE_SNAPSHOT_KIND = 'snapshot-live';

export interface LiveSnapshotPlan extends Omit<SnapshotPlan, 'steps'> {
  socket: string;
  /** the node that was the disk's top */
  node: string;
  /** the overlay's node: the disk's top afterwards */
  newNode: string;
  steps: { label: string; spec: StepSpec }[];
}

/** The default name of the overlay's node: the file's name without its extension, made a legal node name. */
export function defaultNodeName(newTop: string): string {
  const stem = path.basename(newTop).replace(/\.[^.]*$/, '').replace(/[^A-Za-z0-9_.-]/g, '-');
  return /^[A-Za-z]/.test(stem) ? stem.slice(0, 31) : `n-${stem}`.slice(0, 31);
}

/** Looks at the QEMU (queries and a private NBD read of the node's bitmaps) and lays out the plan. Changes nothing. */
export async function planLiveSnapshot(qmp: QmpClient, t: { socket: string; node: string }, newTop: string, o: { checkpoint: string | null; newNode?: string; runtimeDir: string }): Promise<LiveSnapshotPlan> {
  const g = await blockGraph(qmp);
  const nodes = g.nodes;
  const file = topNode(g, t, ['qcow2', 'raw'], 'a snapshot').file;
  if (!path.isAbsolute(file) || !fs.existsSync(file)) throw new StrataError('E_BAD_INPUT', `${t.socket}: node '${t.node}' holds '${file}', which is not a plain file (a json: or network name); Strata cannot name it as the overlay's backing file`, { file: t.socket });
  if (fs.existsSync(newTop)) throw new StrataError('E_BAD_INPUT', `${newTop}: already exists; a snapshot creates a new file`, { file: newTop });
  const newNode = o.newNode ?? defaultNodeName(newTop);
  if (nodes.some((x) => x.name === newNode)) throw new StrataError('E_BAD_INPUT', `${t.socket}: a node named '${newNode}' already exists; choose another with --new-node NAME`, { file: t.socket });

  const live = await readHeldLayer(qmp, { file, connection: t.socket, label: t.socket, kind: 'socket', node: t.node, readOnly: false }, o.runtimeDir);
  if (live.error) throw new StrataError('E_QMP_EXECUTE', `${t.socket}: the live state of node '${t.node}' could not be read: ${live.error}`, { file: t.socket });
  const { shape, size, format } = withChain(file, (c) => {
    const contents = new ChainContents(c, new Map([[file, live]]));
    return { shape: shapeSnapshot(contents, newTop, { checkpoint: o.checkpoint, backing: file }), size: c.layers[0].virtualSize, format: c.layers[0].format };
  });
  // Busy bitmaps (a backup reading them) can still be carried: the new ones are new bitmaps on another node.
  const steps: LiveSnapshotPlan['steps'] = [];
  steps.push({
    label: `create ${path.basename(newTop)}, a qcow2 overlay whose backing file is ${file} (the name QEMU gives node '${t.node}')`,
    spec: {
      kind: 'tool',
      commands: [['qemu-img', 'create', '-q', '-f', 'qcow2', '-b', file, '-F', format, newTop, String(size)]],
      undo: [[REMOVE_COMMAND, newTop]],
      check: { layer: newTop, backing: file },
    },
  });
  const add: QmpCall = { execute: 'blockdev-add', arguments: { driver: 'qcow2', 'node-name': newNode, file: { driver: 'file', filename: newTop }, backing: null } };
  steps.push({
    label: `open ${path.basename(newTop)} in that QEMU as node '${newNode}' (not attached yet: nothing writes it)`,
    spec: { kind: 'qmp', command: add, undo: { execute: 'blockdev-del', arguments: { 'node-name': newNode } }, check: { node: { name: newNode, present: true } } },
  });
  const actions = [
    { type: 'blockdev-snapshot', data: { node: t.node, overlay: newNode } },
    // QEMU stores the bitmaps created in one session newest first: added in reverse, the overlay's
    // directory lists them in creation order, which the checkpoint math reads.
    ...[...shape.bitmaps].reverse().map((b) => ({ type: 'block-dirty-bitmap-add', data: { node: newNode, name: b.name, granularity: b.granularity, persistent: true } })),
  ];
  steps.push({
    label: `in one transaction: switch the disk over to '${newNode}' and add ${shape.bitmaps.length ? shape.bitmaps.map((b) => `'${b.name}'`).join(', ') : 'no bitmap'} to it, recording from its first write`,
    // The switch-over is not taken back (a running guest writes the overlay from then on).
    spec: { kind: 'qmp', command: { execute: 'transaction', arguments: { actions } }, undo: null, check: { node: { name: newNode, present: true, backing: t.node } } },
  });
  return { ...shape, socket: t.socket, node: t.node, newNode, steps };
}

export function liveSnapshotToNewPlan(p: LiveSnapshotPlan): NewPlan {
  return {
    kind: LIVE_SNAPSHOT_KIND,
    summary: `live snapshot of node '${p.node}' (${path.basename(p.image)}) into ${path.basename(p.newTop)} as node '${p.newNode}' with ${p.bitmaps.map((b) => b.name).join(', ') || 'no'} bitmaps`,
    target: { socket: p.socket, image: null, daemonPid: null },
    steps: p.steps.map((s) => ({ label: s.label, spec: s.spec })),
  };
}

export type LiveSnapshotResult = LiveOpResult<LiveSnapshotPlan>;

/**
 * The whole run, as the CLI does it: live snapshots a killed Strata left on this socket finished first
 * (with apply; one that made NEW_TOP is all there is to do), then the look and the plan, and with
 * apply the plan journaled and run.
 */
export function snapshotLive(
  qmp: QmpClient,
  t: { socket: string; node: string },
  newTop: string,
  o: { apply: boolean; db: Db | null; runtimeDir: string; checkpoint: string | null; newNode?: string; hook?: RunContext['hook']; engine?: RunContext['engine'] },
): Promise<LiveSnapshotResult> {
  return liveOperation({
    qmp,
    db: o.db,
    apply: o.apply,
    kind: LIVE_SNAPSHOT_KIND,
    socket: t.socket,
    what: 'live snapshot',
    same: (p) => p.steps[0]?.spec.kind === 'tool' && p.steps[0].spec.commands[0]?.at(-2) === newTop,
    plan: () => planLiveSnapshot(qmp, t, newTop, o),
    toNewPlan: liveSnapshotToNewPlan,
    hook: o.hook,
    engine: o.engine,
  });
}
