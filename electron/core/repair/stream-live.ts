// A live stream that keeps the checkpoints: block-stream on the top node a running QEMU writes (the
// data of the layers between it and a base, or of all of them, pulled into it), through Strata's job
// engine, with every valid bitmap of the layers that leave the chain carried into the top first.
// Measured on QEMU 7.2 (qemu-storage-daemon):
//
// - block-stream does not mark what it copies in the top's recording bitmaps (unlike the offline
//   `qemu-img rebase`), so the top's bitmaps keep recording through the job and take exactly the
//   guest's writes: nothing is paused, nothing is lost.
// - The removed layers are read-only backing nodes: nothing writes them, their bitmaps do not move.
//   So one transaction before the job carries them: into each checkpoint's bitmap in the top go
//   every removed layer's bitmaps that count for it (the checkpoint math's selection: a disabled
//   copy brings its layer's newer bitmaps), first into the names the top has, then the names it
//   lacks are created (the granularity of the copy below, newest first so that QEMU, which stores
//   one session's new bitmaps newest first, writes them in creation order) with the top's own
//   counting bitmaps merged in too. Each bitmap then covers the top and the removed layers by
//   itself, whatever order QEMU lists or stores them in (an order that puts a created one after the
//   top's own makes those read larger, never smaller). From there to the job's end the removed
//   layers leave the chain.
// - A backing-file name for the top's new header that differs from the name QEMU gives the base node
//   (a relative one) makes QEMU call the top node by a json:{...} pseudo-filename: none is given, and
//   QEMU writes the base's own (absolute) file name.
// - Listing the block nodes while a finished stream awaits dismissal crashes QEMU 7.2
//   (jobs/states.ts holdsBlockGraph): the job step only asks query-jobs until it is dismissed.
//
// The plan (kind 'stream-live') is journaled before its first step; a Strata killed during the job
// finds the job again by its journaled id at the next run (or app start) and follows it to the end.
import path from 'node:path';
import type { QmpClient } from '../qmp/client.ts';
import { blockGraph } from '../connections/block-graph.ts';
import { readHeldLayer } from '../connections/live-layers.ts';
import { ChainContents, layerSet } from '../checkpoints.ts';
import type { Chain, Layer } from '../qcow2/chain.ts';
import { withChain } from '../qcow2/chain.ts';
import { union, type ExtentList } from '../extents.ts';
import type { Db } from '../store/db.ts';
import type { RunContext } from '../plans/runner.ts';
import type { NewPlan, StepSpec } from '../plans/types.ts';
import { nodeChain, pick } from '../plans/commit-with-bitmaps.ts';
import { planStream, refuseHiddenUnknowns, StreamedContents, type StreamPlan } from './stream.ts';
import { views, synthEntry } from './plan.ts';
import { liveOperation, topNode, type LiveOpResult } from './live-op.ts';
import { StrataError } from '../errors.ts';

export const LIVE_STREAM_KIND = 'stream-live';

export interface LiveStreamPlan extends Omit<StreamPlan, 'steps'> {
  socket: string;
  node: string;
  baseNode: string | null;
  jobId: string;
  steps: { label: string; spec: StepSpec }[];
}

type Action = { type: string; data: Record<string, unknown> };

/** Looks at the QEMU (queries and a private NBD read of the top's bitmaps) and lays out the plan. Changes nothing. */
export async function planLiveStream(qmp: QmpClient, t: { socket: string; node: string }, o: { base?: string; runtimeDir: string; jobId: string; speed?: number }): Promise<LiveStreamPlan> {
  const n = topNode(await blockGraph(qmp), t, ['qcow2'], 'a stream');
  const chain = await nodeChain(qmp, t.node);
  if (chain.length < 2) throw new StrataError('E_BAD_INPUT', `${n.file}: has no backing file; there is nothing to stream`, { file: n.file });
  const bi = o.base === undefined ? null : pick(chain, o.base, '--base');
  if (bi === 0) throw new StrataError('E_BAD_INPUT', `--base ${o.base}: is the top itself`, { file: n.file });
  const topFile = chain[0].file;

  const live = await readHeldLayer(qmp, { file: topFile, connection: t.socket, label: t.socket, kind: 'socket', node: t.node, readOnly: false }, o.runtimeDir);
  if (live.error) throw new StrataError('E_QMP_EXECUTE', `${t.socket}: the live state of node '${t.node}' could not be read: ${live.error}`, { file: t.socket });
  return withChain(topFile, (c) => {
    const files = c.layers.map((l) => l.path);
    if (files.join('\n') !== chain.map((l) => l.file).join('\n')) {
      throw new StrataError('E_BAD_INPUT', `${t.socket}: the chain QEMU holds (${chain.map((l) => l.file).join(' -> ')}) is not the one the files name (${files.join(' -> ')}); Strata streams only a chain opened from its headers`, { file: t.socket });
    }
    const contents = new ChainContents(c, new Map([[topFile, live]]));
    const p = planStream(contents, { base: bi === null ? null : chain[bi].file, lock: 'free' });
    const plan: LiveStreamPlan = { ...p, socket: t.socket, node: t.node, baseNode: bi === null ? null : chain[bi].node, jobId: o.jobId, steps: [] };
    if (p.refused) return plan;
    const top = contents.chain.layers[0];
    const nodeOf = new Map(chain.map((l) => [l.file, l.node]));
    const rank = contents.rank();
    const removed = contents.chain.layers.filter((l) => p.removed.includes(l.path));
    const actions: Action[] = [];
    const undo: Action[] = [];
    const synth = new Map<string, ExtentList>();
    const created: Layer['bitmaps'] = [];
    const layers = contents.chain.layers;
    /**
     * Every bitmap of the removed layers that counts for "changes since `name`" (the checkpoint math's
     * own selection, from the lowest layer holding it up): a disabled copy needs its layer's other
     * bitmaps, and a removed layer above it that lacks it counts by its later ones. Merged into the
     * top's `name`, it makes that bitmap cover the removed layers by itself, whatever order QEMU stores
     * the top's bitmaps in.
     */
    const countingBelow = (name: string) => {
      let lowest = layers.length - 1;
      while (lowest > 0 && !layers[lowest].bitmaps.some((b) => b.name === name)) lowest--;
      const out: { node: string; name: string; layer: Layer; bm: Layer['bitmaps'][number] }[] = [];
      for (let i = lowest; i >= 1; i--) {
        if (!p.removed.includes(layers[i].path)) continue;
        for (const bm of layerSet(layers[i], name, rank).set) out.push({ node: nodeOf.get(layers[i].path)!, name: bm.name, layer: layers[i], bm });
      }
      return out;
    };
    const sourcesOf = (name: string) => countingBelow(name).map(({ node, name: n }) => ({ node, name: n }));
    const contentsOf = (name: string) => countingBelow(name).map((s) => contents.bitmap(s.layer, s.bm));
    /** a top bitmap as it will be once the transaction merged the removed layers into it */
    const merged = (b: Layer['bitmaps'][number]) => synth.get(`${top.path}\0${b.name}`) ?? contents.bitmap(top, b);
    // First the merges into the top's own bitmaps: a created one below takes some of those in (its
    // counting ones), and QEMU runs a transaction's actions in order, so they must be complete by then
    // (measured: a live snapshot then a stream lost the old top's marks of a checkpoint otherwise).
    for (const cr of p.carried) {
      const own = top.bitmaps.find((b) => b.name === cr.name);
      if (!own) continue;
      actions.push({ type: 'block-dirty-bitmap-merge', data: { node: t.node, target: cr.name, bitmaps: sourcesOf(cr.name) } });
      synth.set(`${top.path}\0${cr.name}`, union([contents.bitmap(top, own), ...contentsOf(cr.name)]));
    }
    // Then the missing ones, newest first: QEMU stores the bitmaps one session created newest first,
    // so the file ends in creation order. Each also takes the top's own bitmaps that count for it, so
    // it covers the top by itself too.
    const missing = p.carried.filter((cr) => !top.bitmaps.some((b) => b.name === cr.name)).sort((a, b) => rank.get(b.name)! - rank.get(a.name)!);
    for (const cr of missing) {
      const counting = layerSet(top, cr.name, rank).set;
      const below = countingBelow(cr.name);
      const records = below.some((s) => s.bm.auto) || counting.some((b) => b.auto);
      const g = below.find((s) => s.bm.name === cr.name)!.bm.granularity;
      actions.push({ type: 'block-dirty-bitmap-add', data: { node: t.node, name: cr.name, granularity: g, persistent: true, disabled: !records } });
      actions.push({ type: 'block-dirty-bitmap-merge', data: { node: t.node, target: cr.name, bitmaps: [...sourcesOf(cr.name), ...counting.map((b) => b.name)] } });
      undo.push({ type: 'block-dirty-bitmap-remove', data: { node: t.node, name: cr.name } });
      synth.set(`${top.path}\0${cr.name}`, union([...contentsOf(cr.name), ...counting.map(merged)]));
      created.push(synthEntry(cr.name, g, records, top.bitmaps.length + created.length));
    }
    if (actions.length) {
      const first = missing[0]?.name;
      plan.steps.push({
        label: `carry ${p.carried.map((x) => `'${x.name}'`).join(', ')} from ${removed.map((l) => path.basename(l.path)).join(', ')} into node '${t.node}' (${path.basename(top.path)}), before those layers leave the chain`,
        spec: {
          kind: 'qmp',
          command: { execute: 'transaction', arguments: { actions } },
          // A merge into a bitmap the top already had is not taken back: it only adds marks.
          undo: undo.length ? { execute: 'transaction', arguments: { actions: undo } } : 'nothing-to-undo',
          check: first ? { bitmap: { node: t.node, name: first, present: true } } : null,
        },
      });
    }
    plan.steps.push({
      label: `stream into node '${t.node}' the data of ${removed.map((l) => path.basename(l.path)).join(', ')}${plan.baseNode ? `; it then backs onto ${path.basename(p.base!)}` : '; it then has no backing file'} (block-stream; the guest keeps writing, the top's bitmaps keep recording)`,
      spec: { kind: 'job', jobId: o.jobId, start: { execute: 'block-stream', arguments: { device: t.node, ...(plan.baseNode ? { 'base-node': plan.baseNode } : {}), ...(o.speed ? { speed: o.speed } : {}) } }, until: 'concluded' },
    });
    // The chain as it will be: the top with its bitmaps (the created ones after its own) and the data.
    const base = bi === null ? contents.chain.layers.length : contents.chain.layers.findIndex((l) => l.path === p.base);
    const topAfter = union([contents.allocation(top), ...removed.map((l) => contents.allocation(l))]);
    const simTop: Layer = { ...top, bitmaps: [...top.bitmaps, ...created], backingFile: p.base, backingFormat: contents.chain.layers[base]?.format ?? null };
    const simChain: Chain = { image: top.path, layers: [simTop, ...contents.chain.layers.slice(base)], close() {} };
    const g0 = top.bitmaps[0]?.granularity ?? 65536;
    plan.after = views(new StreamedContents(simChain, synth, contents, top.path, topAfter), g0, p.before.map((v) => v.name));
    return refuseHiddenUnknowns(plan);
  });
}

export function liveStreamToNewPlan(p: LiveStreamPlan): NewPlan {
  return {
    kind: LIVE_STREAM_KIND,
    summary: `live stream of ${p.removed.map((f) => path.basename(f)).join(', ')} into node '${p.node}' (${path.basename(p.image)})${p.carried.length ? `, carrying ${p.carried.map((c) => c.name).join(', ')}` : ''}`,
    target: { socket: p.socket, image: null, daemonPid: null },
    steps: p.steps.map((s) => ({ label: s.label, spec: s.spec })),
  };
}

export type LiveStreamResult = LiveOpResult<LiveStreamPlan>;

/** The whole run, as the CLI does it (see live-op.ts). A recovered stream into the same node is all there is to do. */
export function streamLive(qmp: QmpClient, t: { socket: string; node: string }, o: { apply: boolean; db: Db | null; runtimeDir: string; base?: string; speed?: number; hook?: RunContext['hook']; engine?: RunContext['engine'] }): Promise<LiveStreamResult> {
  const jobId = `strata-stream-${process.pid}-${Date.now().toString(36)}`;
  return liveOperation({
    qmp,
    db: o.db,
    apply: o.apply,
    kind: LIVE_STREAM_KIND,
    socket: t.socket,
    what: 'live stream',
    same: (p) => p.steps.some((s) => s.spec.kind === 'job' && s.spec.start.arguments.device === t.node),
    plan: () => planLiveStream(qmp, t, { base: o.base, runtimeDir: o.runtimeDir, jobId, speed: o.speed }),
    toNewPlan: liveStreamToNewPlan,
    hook: o.hook,
    engine: o.engine,
  });
}
