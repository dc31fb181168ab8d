// What the live chain operations (snapshot, stream on a running QEMU) share: plans of the same kind a
// killed Strata left on that QEMU are finished or rolled back first (plans/runner.ts reads back from
// QEMU and the files what the interrupted step did), then the new plan is laid out, and with apply it
// is journaled before its first step and run.
import type { QmpClient } from '../qmp/client.ts';
import type { Db } from '../store/db.ts';
import { PlanStore } from '../store/plans.ts';
import { runPlan, recoverPlan, type RunContext } from '../plans/runner.ts';
import type { NewPlan, Plan } from '../plans/types.ts';
import type { BlockGraph, BlockNodeInfo } from '../contract.ts';
import { StrataError } from '../errors.ts';

/** The disk's top node `t.node` as QEMU shows it, or a typed refusal naming the socket: absent, of another driver, read-only, or some node's backing. */
export function topNode(g: BlockGraph, t: { socket: string; node: string }, drivers: string[], what: string): BlockNodeInfo {
  const n = g.nodes.find((x) => x.name === t.node);
  if (!n) {
    const named = g.nodes.filter((x) => !x.name.startsWith('#')).map((x) => `${x.name} (${x.file})`);
    throw new StrataError('E_BAD_INPUT', `${t.socket}: no block node named '${t.node}' (named nodes: ${named.join(', ') || 'none'})`, { file: t.socket });
  }
  if (!drivers.includes(n.driver)) throw new StrataError('E_BAD_INPUT', `${t.socket}: node '${t.node}' is a ${n.driver} node; name the ${drivers.join(' or ')} node of the disk's top layer`, { file: t.socket });
  if (n.readOnly) throw new StrataError('E_BAD_INPUT', `${t.socket}: node '${t.node}' (${n.file}) is read-only: it is not the layer the disk writes; name the disk's top node`, { file: t.socket });
  const parent = g.edges.find((e) => e.child === t.node && e.role === 'backing');
  if (parent) throw new StrataError('E_BAD_INPUT', `${t.socket}: node '${t.node}' is the backing of node '${parent.parent}': ${what} goes on the disk's top node`, { file: t.socket });
  return n;
}

export interface LiveOpResult<P> {
  /** null when a recovered plan already did what was asked */
  plan: P | null;
  /** the journaled plan's id and how it ended (with apply) */
  outcome: { id: number; state: string; resolution: string } | null;
  /** interrupted plans of this kind on this socket, and what became of them */
  recovered: string[];
}

export async function liveOperation<P extends { refused: string | null }>(o: {
  qmp: QmpClient;
  db: Db | null;
  apply: boolean;
  kind: string;
  socket: string;
  what: string;
  /** does this interrupted plan, once done, already do what is asked now? */
  same: (p: Plan) => boolean;
  plan: () => Promise<P>;
  toNewPlan: (p: P) => NewPlan;
  hook?: RunContext['hook'];
  /** the connection's own job engine (the app's connection manager); a private one when absent (CLI) */
  engine?: RunContext['engine'];
}): Promise<LiveOpResult<P>> {
  const store = o.db ? new PlanStore(o.db) : null;
  const recovered: string[] = [];
  let finished = false;
  for (const p of store?.unfinished().filter((x) => x.kind === o.kind && x.target.socket === o.socket) ?? []) {
    if (!o.apply) {
      recovered.push(`${o.what} plan #${p.id} was interrupted; run with --yes to finish or roll it back`);
      continue;
    }
    const r = await recoverPlan({ qmp: o.qmp, engine: o.engine, store: store! }, p.id);
    recovered.push(`${o.what} plan #${p.id} (interrupted): ${r.plan.state}: ${r.resolution}`);
    if (r.plan.state === 'done' && o.same(p)) finished = true;
  }
  if (finished) return { plan: null, outcome: null, recovered };
  const plan = await o.plan();
  if (!o.apply || plan.refused) return { plan, outcome: null, recovered };
  const id = store!.create(o.toNewPlan(plan));
  const out = await runPlan({ qmp: o.qmp, engine: o.engine, store: store!, hook: o.hook }, id);
  return { plan, outcome: { id, state: out.plan.state, resolution: out.resolution }, recovered };
}
