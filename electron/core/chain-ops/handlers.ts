// Snapshot and stream from the app: the same planners and journaled tool plans as `strata snapshot`
// and `strata stream`. A chain a connected QEMU holds is refused here (its lock would refuse the tools
// anyway) with what to do instead.
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
import type { NewPlan } from '../plans/types.ts';
import type { ChainOpReport, ChainOpRequest, chainOpArgs } from './contract.ts';
import { StrataError } from '../errors.ts';

interface Planned {
  report: Omit<ChainOpReport, 'applied' | 'outcome'>;
  newPlan: NewPlan;
}

async function planOp(req: ChainOpRequest, connections: Pick<ConnectionManager, 'holders'>): Promise<Planned> {
  const held = await connections.holders(withChain(req.image, (c) => c.layers.map((l) => l.path)));
  const lock = held.length || (await imageLockState(req.image)) === 'locked' ? 'locked' : 'free';
  const heldBy = held.find((h) => h.file === req.image) ?? held[0];
  const heldWhy = heldBy ? `${req.image}: open in ${holderWords(heldBy)} (${path.basename(heldBy.label)}); close that connection first (a ${req.op} of a running QEMU's disk is not built yet)` : null;
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

export function createChainOpHandlers(d: { db: Db; history: History; emit: EventListener; connections: Pick<ConnectionManager, 'holders'> }): HandlersFor<typeof chainOpArgs> {
  return {
    'chain-op:plan': async (req) => ({ ...(await planOp(req, d.connections)).report, applied: false, outcome: null }),
    'chain-op:apply': async (req) => {
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
