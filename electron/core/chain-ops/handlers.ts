// Snapshot and stream from the app: the same planners and journaled plans as `strata snapshot` and
// `strata stream`. Offline, a chain a connected QEMU holds is refused (its lock would refuse the tools
// anyway) with what to do instead: the live form, on that connection's disk node, which runs the live
// plans (repair/snapshot-live.ts, stream-live.ts) on the connection manager's own QMP client and job
// engine (QEMU serves one client per monitor), journaled as the CLI journals them.
import path from 'node:path';
import fs from 'node:fs';
import type { EventListener, HandlersFor } from '../handlers.ts';
import type { Db } from '../store/db.ts';
import type { History } from '../store/history.ts';
import type { ConnectionManager } from '../connections/manager.ts';
import { PlanStore } from '../store/plans.ts';
import { imageLockState } from '../daemon/image-lock.ts';
import { withChain } from '../qcow2/chain.ts';
import { ChainContents } from '../checkpoints.ts';
import { inspect } from '../inspect.ts';
import { holderWords } from '../connections/live-layers.ts';
import { planSnapshot, snapshotToNewPlan } from '../repair/snapshot.ts';
import { planStream, streamToNewPlan } from '../repair/stream.ts';
import { runRepairPlan } from '../repair/run.ts';
import { snapshotLive, liveSnapshotToNewPlan } from '../repair/snapshot-live.ts';
import { streamLive, liveStreamToNewPlan } from '../repair/stream-live.ts';
import type { LiveOpResult } from '../repair/live-op.ts';
import { stepCommands, type NewPlan, type StepSpec } from '../plans/types.ts';
import type { ChainOpReport, ChainOpRequest, LiveChainOpRequest, OfflineChainOpRequest, chainOpArgs } from './contract.ts';
import { StrataError } from '../errors.ts';

interface Planned {
  report: Omit<ChainOpReport, 'applied' | 'outcome'>;
  newPlan: NewPlan;
}

async function planOp(req: OfflineChainOpRequest, connections: Pick<ConnectionManager, 'holders'>): Promise<Planned> {
  const held = await connections.holders(withChain(req.image, (c) => c.layers.map((l) => l.path)));
  const lock = held.length || (await imageLockState(req.image)) === 'locked' ? 'locked' : 'free';
  const heldBy = held.find((h) => h.file === req.image) ?? held[0];
  const heldWhy = heldBy ? `${req.image}: open in ${holderWords(heldBy)} (${path.basename(heldBy.label)}); close that connection first, or take the ${req.op} live: Connections, ${req.op === 'snapshot' ? 'Snapshot…' : 'Stream…'} on the disk's top node (${heldBy.node})` : null;
  const steps = (s: { label: string; spec: { commands: string[][] } }[]) => s.map((x) => ({ label: x.label, commands: x.spec.commands }));
  if (req.op === 'snapshot') {
    const p = withChain(req.image, (c) => planSnapshot(new ChainContents(c), req.newTop, { checkpoint: req.checkpoint ?? null, lock }));
    const exists = fs.existsSync(req.newTop) ? `${req.newTop}: already exists; a snapshot creates a new file` : null;
    const newPlan = snapshotToNewPlan(p);
    return {
      newPlan,
      report: {
        op: 'snapshot',
        image: p.image,
        live: null,
        active: p.newTop,
        summary: newPlan.summary,
        refused: heldWhy ?? exists ?? p.refused,
        carried: p.bitmaps.map((b) => ({ name: b.name, from: b.name === req.checkpoint ? [] : [p.image], created: true })),
        notCarried: p.notCarried,
        steps: steps(p.steps),
        before: p.before,
        after: p.after,
      },
    };
  }
  const p = withChain(req.image, (c) => planStream(new ChainContents(c), { base: req.base ?? null, lock }));
  const newPlan = streamToNewPlan(p);
  return {
    newPlan,
    report: {
      op: 'stream',
      image: p.image,
      live: null,
      active: p.image,
      summary: newPlan.summary,
      refused: heldWhy ?? p.refused,
      carried: p.carried,
      notCarried: p.notCarried.map((n) => ({ name: n.name, why: `${path.basename(n.layer)}: ${n.why}` })),
      steps: steps(p.steps),
      before: p.before,
      after: p.after,
    },
  };
}

type Deps = { db: Db; history: History; emit: EventListener; runtimeDir: string; connections: Pick<ConnectionManager, 'holders' | 'planConnection'> };

const isLive = (req: ChainOpRequest): req is LiveChainOpRequest => 'connection' in req;
const liveSteps = (s: { label: string; spec: StepSpec }[]) => s.map((x) => ({ label: x.label, commands: x.spec.kind === 'tool' ? x.spec.commands : [], qmp: x.spec.kind === 'tool' ? [] : stepCommands(x.spec) }));

/**
 * A running QEMU's disk: the live plan laid out (queries and a private NBD read of the node's bitmaps
 * only), and with apply journaled and run on the connection's own client and engine. A refusal, or a
 * plan that did not finish, is a typed error naming the connection's socket.
 */
async function liveOp(req: LiveChainOpRequest, d: Deps, apply: boolean): Promise<ChainOpReport> {
  const conn = d.connections.planConnection(req.connection);
  const t = { socket: conn.target.socket, node: req.node };
  const o = { apply, db: d.db, runtimeDir: d.runtimeDir, engine: conn.engine };
  let r: LiveOpResult<{ refused: string | null }>;
  let report: Omit<ChainOpReport, 'applied' | 'outcome' | 'recovered'> | null = null;
  if (req.op === 'snapshot') {
    const s = await snapshotLive(conn.qmp, t, req.newTop, { ...o, checkpoint: req.checkpoint ?? null });
    r = s;
    const p = s.plan;
    if (p) {
      report = {
        op: 'snapshot',
        image: p.image,
        live: { connection: req.connection, node: p.node, activeNode: p.newNode },
        active: p.newTop,
        summary: liveSnapshotToNewPlan(p).summary,
        refused: p.refused,
        carried: p.bitmaps.map((b) => ({ name: b.name, from: b.name === req.checkpoint ? [] : [p.image], created: true })),
        notCarried: p.notCarried,
        steps: liveSteps(p.steps),
        before: p.before,
        after: p.after,
      };
    }
  } else {
    const s = await streamLive(conn.qmp, t, { ...o, base: req.base });
    r = s;
    const p = s.plan;
    if (p) {
      report = {
        op: 'stream',
        image: p.image,
        live: { connection: req.connection, node: p.node, activeNode: p.node },
        active: p.image,
        summary: liveStreamToNewPlan(p).summary,
        refused: p.refused,
        carried: p.carried,
        notCarried: p.notCarried.map((n) => ({ name: n.name, why: `${path.basename(n.layer)}: ${n.why}` })),
        steps: liveSteps(p.steps),
        before: p.before,
        after: p.after,
      };
    }
  }
  if (apply && report?.refused) throw new StrataError('E_BAD_INPUT', report.refused, { file: t.socket });
  if (r.outcome && r.outcome.state !== 'done') {
    throw new StrataError('E_QMP_EXECUTE', `${t.socket}: the live ${req.op} did not finish (plan #${r.outcome.id} ${r.outcome.state}: ${r.outcome.resolution})`, { file: t.socket });
  }
  // No plan: one a killed Strata left on this QEMU, finished now, already did what was asked.
  const done = report ?? {
    op: req.op,
    image: t.socket,
    live: { connection: req.connection, node: req.node, activeNode: req.node },
    active: req.op === 'snapshot' ? req.newTop : t.socket,
    summary: r.recovered.join('; '),
    refused: null,
    carried: [],
    notCarried: [],
    steps: [],
    before: [],
    after: [],
  };
  return { ...done, applied: apply, outcome: r.outcome, recovered: r.recovered };
}

export function createChainOpHandlers(d: Deps): HandlersFor<typeof chainOpArgs> {
  return {
    'chain-op:plan': async (req) => (isLive(req) ? liveOp(req, d, false) : { ...(await planOp(req, d.connections)).report, applied: false, outcome: null }),
    'chain-op:apply': async (req) => {
      if (isLive(req)) return liveOp(req, d, true);
      const { report, newPlan } = await planOp(req, d.connections);
      if (report.refused) throw new StrataError('E_BAD_INPUT', report.refused, { file: req.image });
      const store = new PlanStore(d.db);
      const id = store.create(newPlan);
      const r = await runRepairPlan({ store }, id);
      const outcome = { id, state: r.plan.state, resolution: r.resolution };
      if (r.plan.state === 'done') {
        // A snapshot's new top is the chain's active image now: it joins the workspace, scanned.
        if (report.active !== req.image) d.history.addImage(report.active);
        d.emit('chain:scanned', d.history.recordScan(inspect(report.active)));
        if (report.active !== req.image) d.emit('workspace:changed', d.history.listWorkspace());
      } else {
        throw new StrataError('E_TOOL', `${req.image}: the ${req.op} did not finish (${r.resolution})`, { file: req.image });
      }
      return { ...report, applied: true, outcome };
    },
  };
}
