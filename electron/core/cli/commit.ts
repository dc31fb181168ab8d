// strata commit: commit the active layer into its backing and keep every checkpoint. Without --yes
// the plan (what happens to each checkpoint, and the exact QMP of every step) is printed and
// nothing is written: an offline image is looked at through a read-only daemon, because QEMU
// rewrites bitmap metadata on any read-write open. With --yes the plan is journaled in SQLite
// before its first step and run; an offline image's daemon is then stopped with SIGTERM, which
// makes QEMU store the bitmaps, and only then is the plan journaled done.
import path from 'node:path';
import { parseArgs } from './args.ts';
import type { Out } from './output.ts';
import { defaultDataDir } from '../paths.ts';
import { StorageDaemon, TOP_NODE } from '../daemon/storage-daemon.ts';
import { QmpClient } from '../qmp/client.ts';
import { planCommitWithBitmaps, type CommitScheme } from '../plans/commit-with-bitmaps.ts';
import { planPreview } from '../plans/service-plans.ts';
import { runPlan, recoverPlan } from '../plans/runner.ts';
import { recoverOfflineCommit, runOfflineCommit } from '../plans/offline-recovery.ts';
import { isStorageDaemonFor, stopStorageDaemon } from '../processes.ts';
import { openDb } from '../store/db.ts';
import { PlanStore } from '../store/plans.ts';
import { QmpTrafficLog } from '../store/qmp-traffic.ts';
import type { PlanTarget } from '../plans/types.ts';
import { inspect } from '../inspect.ts';
import { StrataError } from '../errors.ts';

export const COMMIT_HELP = `Usage: strata commit TOP [--top LAYER] [--base LAYER] [--scheme seed|libvirt] [--yes] [--json]
       strata commit --socket PATH --node NODE [--top LAYER] [--base LAYER] [--scheme seed|libvirt] [--yes] [--json]

Commits the active layer TOP into its backing file and keeps every checkpoint: the top's bitmaps
are carried into the base (created there when missing, merged from the top's), so "changes since"
every checkpoint still covers every write. The disk then runs on the base.

  --base LAYER      commit into LAYER, further down TOP's chain: every layer above it leaves the
                    chain, and their bitmaps are all carried into LAYER
  --top LAYER       an intermediate commit: LAYER (a layer below TOP) and the layers between it and
                    the base are committed; TOP stays the active layer, and the layer above LAYER
                    is rebased onto the base (its backing name kept relative). No switch-over.
                    With --socket, LAYER may be a node name or a file of the disk's chain.

  --scheme seed     (default) the base's recording bitmaps are paused while the commit copies, so
                    they keep exactly what they held; where the top's bitmaps do not cover
                    everything written in the top (an overlay made outside Strata), they keep
                    recording instead, and the plan says so
  --scheme libvirt  the base's bitmaps keep recording through the commit (they also mark what the
                    commit copies)

Without --yes the plan is printed and nothing is written. TOP is opened in Strata's own
qemu-storage-daemon; --socket PATH --node NODE works on a running QEMU's disk instead.`;

const SCHEMES = ['seed', 'libvirt'];

export async function cmdCommit(argv: string[], out: Out): Promise<void> {
  const a = parseArgs(argv, { flags: ['yes'], options: ['socket', 'node', 'base', 'top', 'scheme'] });
  if (a.flags.has('help')) return out.write(COMMIT_HELP + '\n');
  const scheme = (a.options.get('scheme') ?? 'seed') as CommitScheme;
  if (!SCHEMES.includes(scheme)) throw new StrataError('E_BAD_INPUT', `--scheme ${scheme}: expected seed or libvirt`);
  const socket = a.options.get('socket');
  let image: string | null = null;
  let node = TOP_NODE;
  if (socket) {
    if (a.positionals.length) throw new StrataError('E_BAD_INPUT', 'with --socket, name the disk with --node NODE, not an image path');
    const n = a.options.get('node');
    if (!n) throw new StrataError('E_BAD_INPUT', '--socket needs --node NODE (the top node of the disk; see query-named-block-nodes)');
    node = n;
  } else {
    if (a.positionals.length !== 1) throw new StrataError('E_BAD_INPUT', 'wrong arguments; see strata commit --help');
    image = path.resolve(a.positionals[0]);
    // Read the chain first: a bad image is refused with the reader's error before any QEMU opens it.
    const chain = inspect(image);
    if (chain.layers.length < 2) throw new StrataError('E_BAD_INPUT', `${image}: has no backing file, there is nothing to commit into`, { file: image });
    // --top and --base are refused here, before any QEMU opens the image, when they are not below.
    const files = chain.layers.map((l) => l.path);
    const at = (o: string) => {
      const v = a.options.get(o);
      if (v === undefined) return undefined;
      const i = files.indexOf(path.resolve(v));
      if (i < 0) throw new StrataError('E_BAD_INPUT', `--${o} ${path.resolve(v)}: not a layer of ${image}'s chain (its layers: ${files.join(', ')})`, { file: path.resolve(v) });
      return i;
    };
    const ti = at('top') ?? 0;
    const bi = at('base') ?? ti + 1;
    if (ti === files.length - 1) throw new StrataError('E_BAD_INPUT', `--top ${files[ti]}: has no backing file, there is nothing to commit into`, { file: files[ti] });
    if (bi <= ti) throw new StrataError('E_BAD_INPUT', `--base ${files[bi]}: not below the commit's top ${files[ti]} in the chain (${files.join(' -> ')})`, { file: files[bi] });
  }
  const topOpt = a.options.get('top');
  const baseOpt = a.options.get('base');
  const resolveLayer = (v: string | undefined) => (v === undefined ? undefined : socket && !v.includes('/') ? v : path.resolve(v));
  const apply = a.flags.has('yes');
  const json = a.flags.has('json');
  const dataDir = defaultDataDir();
  const runtimeDir = path.join(dataDir, 'run');

  if (image && apply && (await finishLeft(image, runtimeDir, dataDir, json, out))) return;
  // Applied, the QMP goes to the traffic log with the history: the plan's steps point at their lines.
  const db = apply ? openDb(path.join(dataDir, 'strata.db')) : null;
  const traffic = db ? new QmpTrafficLog(db).open(`strata commit ${image ?? `--socket ${socket} --node ${node}`}`, image ? `qemu-storage-daemon for ${image}` : path.resolve(socket!)) : null;
  let daemon: StorageDaemon | null = null;
  let qmp: QmpClient;
  const planOpts = { scheme, runtimeDir, top: resolveLayer(topOpt), base: resolveLayer(baseOpt) };
  if (image && apply) {
    // Planned first through a read-only daemon: a refused plan (a checkpoint it cannot keep true)
    // must leave the files as they were, and QEMU rewrites bitmap metadata on any read-write open.
    try {
      const look = await StorageDaemon.start({ image, runtimeDir, readOnly: true });
      try {
        await planCommitWithBitmaps(look.qmp, { socket: look.socket, image, daemonPid: look.pid ?? null }, node, 'strata-commit-look', planOpts);
      } finally {
        await look.stop();
      }
    } catch (e) {
      traffic?.close(`refused: ${(e as Error).message}`);
      db?.close();
      throw e;
    }
  }
  try {
    daemon = image ? await StorageDaemon.start({ image, runtimeDir, readOnly: !apply, onTraffic: traffic?.sink }) : null;
    qmp = daemon ? daemon.qmp : await QmpClient.connect(path.resolve(socket!), { onTraffic: traffic?.sink });
  } catch (e) {
    traffic?.close(`could not start: ${(e as Error).message}`);
    db?.close();
    throw e;
  }
  const target: PlanTarget = daemon ? { socket: daemon.socket, image, daemonPid: daemon.pid ?? null } : { socket: qmp.path, image: null, daemonPid: null };
  const jobId = `strata-commit-${process.pid}-${Date.now().toString(36)}`;
  try {
    const plan = await planCommitWithBitmaps(qmp, target, node, jobId, planOpts);
    const preview = planPreview(plan);
    if (!apply) {
      if (json) return out.write(JSON.stringify({ applied: false, active: plan.effects.active, plan: preview }, null, 2) + '\n');
      writePlanText(out, preview);
      out.write('\nNothing was changed. Run again with --yes to apply.\n');
      return;
    }
    const store = new PlanStore(db!);
    // Plans a killed Strata left on this same QEMU are finished first (resumed or rolled back).
    for (const p of store.unfinished().filter((x) => x.target.socket === target.socket)) await recoverPlan({ qmp, store }, p.id);
    const id = store.create(plan);
    // An offline commit ends when Strata's daemon has stored the bitmaps, not before (offline-recovery.ts).
    const outcome = daemon ? await runOfflineCommit({ store }, id, daemon, runtimeDir) : await runPlan({ qmp, store }, id);
    const ok = outcome.plan.state === 'done';
    if (json) {
      out.write(JSON.stringify({ applied: true, active: ok || plan.effects.intermediate ? plan.effects.active : plan.effects.top, plan: preview, id, state: outcome.plan.state, resolution: outcome.resolution }, null, 2) + '\n');
    } else {
      out.write(`Plan #${id}: ${outcome.plan.state}${ok ? '' : ` (${outcome.resolution})`}\n`);
      if (ok) {
        out.write(`The disk now runs on ${plan.effects.active}.\n`);
        if (image) {
          const l = inspect(plan.effects.active).layers[0];
          out.write(`${path.basename(l.path)} now has: ${l.bitmaps.map((b) => `${b.name} [${b.flags.join(', ') || 'disabled'}]`).join(', ') || 'no bitmaps'}\n`);
        }
      }
    }
    if (!ok) throw new StrataError('E_QMP_EXECUTE', `${plan.effects.top}: the commit did not finish (${outcome.resolution}); see strata history`, { file: plan.effects.top });
  } finally {
    if (daemon) await daemon.stop();
    else await qmp.close();
    traffic?.close('strata commit ended');
    db?.close();
  }
}

function writePlanText(out: Out, p: ReturnType<typeof planPreview>): void {
  const e = p.effects!;
  out.write(`Plan: ${p.summary}\n\n`);
  out.write(`Checkpoints afterwards: ${e.checkpointsKept.join(', ') || 'none'}; the disk runs on ${e.active}\n`);
  if (e.removed && e.removed.length > 1) out.write(`Leaving the chain: ${e.removed.join(', ')}\n`);
  for (const c of e.carried) out.write(`  carried: ${c.name} (${c.created ? 'created in the base' : "merged into the base's own"}, ${c.recordsAfter ? 'records afterwards' : 'stays disabled'}${c.from && c.from.length ? `; from ${c.from.join(', ')}` : ''})\n`);
  for (const n of e.disabledDuringCommit) out.write(`  paused during the commit: ${n}\n`);
  for (const k of e.keptRecording) out.write(`  recording throughout: ${k.name}: ${k.why}\n`);
  for (const l of e.lost) out.write(`  LOST: ${l.name}: ${l.why}\n`);
  out.write('\nSteps and the QMP they send:\n');
  p.steps.forEach((s, i) => {
    out.write(`${i + 1}. ${s.label}\n`);
    for (const c of s.commands) out.write(`     ${JSON.stringify(c)}\n`);
  });
}

/**
 * A commit plan on this image that a killed Strata, or a killed daemon, left unfinished is finished
 * (or undone) first, and that is all: through its daemon when that still runs, else from the files.
 */
async function finishLeft(image: string, runtimeDir: string, dataDir: string, json: boolean, out: Out): Promise<boolean> {
  const db = openDb(path.join(dataDir, 'strata.db'));
  try {
    const store = new PlanStore(db);
    const left = store.unfinished().filter((p) => p.kind === 'commit-with-bitmaps' && p.target.image === image);
    for (const p of left) {
      let resolution: string | null = null;
      if (isStorageDaemonFor(p.target.daemonPid, image)) {
        const qmp = await QmpClient.connect(p.target.socket, { connectTimeoutMs: 3000 }).catch(() => null);
        if (qmp) {
          try {
            resolution = (await recoverPlan({ qmp, store }, p.id)).resolution;
          } finally {
            await qmp.close().catch(() => {});
          }
          // that daemon outlived the Strata that started it: SIGTERM stores its bitmaps
          if (!(await stopStorageDaemon(p.target.daemonPid!))) {
            throw new StrataError('E_BUSY', `${image}: the storage daemon (pid ${p.target.daemonPid}) of commit plan #${p.id} did not stop within 10 s of SIGTERM; it still holds the image (see strata history --plans)`, { file: image });
          }
        }
      } else resolution = await recoverOfflineCommit(store, p.id, runtimeDir);
      const now = store.get(p.id)!;
      if (resolution === null) throw new StrataError('E_BUSY', `${image}: commit plan #${p.id} was interrupted and cannot be finished now (its daemon or another process holds the image); see strata history --plans`, { file: image });
      const active = now.state === 'done' || now.effects?.intermediate ? now.effects!.active : now.effects!.top;
      out.write(json ? JSON.stringify({ recovered: p.id, state: now.state, resolution, active }) + '\n' : `commit plan #${p.id} (interrupted): ${resolution}\n`);
    }
    return left.length > 0;
  } finally {
    db.close();
  }
}
