// The core behind the contract: one handler per channel, plus pushed events. Both transports
// (Electron IPC, browser-mode WebSocket) call these through dispatch(), never directly.
import { execFileSync } from 'node:child_process';
import path from 'node:path';
import type { AppInfo, ArgOf, Channel, ContentSource, EventName, Events, ResultOf } from './contract.ts';
import { openDb, type Db } from './store/db.ts';
import { History } from './store/history.ts';
import { inspect } from './inspect.ts';
import { ContentsCache, LiveContents } from './contents.ts';
import { readLiveBitmap } from './bitmaps/live-contents.ts';
import { density, slice } from './extents.ts';
import { buildDemo } from './demo/build-demo.ts';
import { StrataError } from './errors.ts';
import { VERSION } from './version.ts';
import { ConnectionManager } from './connections/manager.ts';
import { JobStore } from './store/jobs.ts';
import { Operations } from './store/operations.ts';
import type { JobStartSpec, JobVerbName } from './contract.ts';
import { JOB_VERBS } from './jobs/states.ts';
import type { BitmapOpSpec, BitmapTarget } from './contract.ts';
import { openTarget, planOn, runBitmapOp, runOnSession, type OpRequest } from './bitmaps/run.ts';
import { PlanStore } from './store/plans.ts';
import { ServicePlans, planInfo, PLAN_KINDS } from './plans/service-plans.ts';
import type { PlanRequest } from './contract.ts';

export type Handlers = { [C in Channel]: (arg: ArgOf<C>) => Promise<ResultOf<C>> | ResultOf<C> };
export type EventListener = <E extends EventName>(event: E, payload: Events[E]) => void;

export interface ServiceOptions {
  dataDir: string;
  mode: AppInfo['mode'];
  /** better_sqlite3.node for the running ABI (Electron) */
  nativeBinding?: string;
  /** native file picker, Electron only */
  openImageDialog?: () => Promise<string | null>;
}

export interface Service {
  handlers: Handlers;
  subscribe(listener: EventListener): () => void;
  /** stops Strata's own daemons (SIGTERM: bitmaps are stored) and closes the database */
  close(): Promise<void>;
}

function qemuImgVersion(): string | null {
  try {
    return execFileSync('qemu-img', ['--version'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).split('\n')[0].trim();
  } catch {
    return null;
  }
}

const MAX_BUCKETS = 65536;
const MAX_EXTENTS = 100_000;

function bad(msg: string): never {
  throw new StrataError('E_BAD_INPUT', msg);
}

function needPath(v: unknown, what: string): string {
  if (typeof v !== 'string' || v.length === 0 || v.length > 4096 || v.includes('\0')) bad(`${what}: expected a file path`);
  if (!path.isAbsolute(v)) bad(`${what}: '${v}' is not an absolute path`);
  return path.normalize(v);
}

function needInt(v: unknown, what: string, min: number, max: number): number {
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < min || v > max) bad(`${what}: expected an integer in ${min}..${max}`);
  return v;
}

function needSource(v: unknown): ContentSource {
  const s = v as Partial<Record<string, unknown>> | null;
  if (!s || typeof s !== 'object') bad('source: expected an object');
  if (s.kind === 'bitmap') {
    if (typeof s.name !== 'string' || !s.name) bad('source.name: expected a bitmap name');
    return { kind: 'bitmap', layer: needPath(s.layer, 'source.layer'), name: s.name };
  }
  if (s.kind === 'allocation') return { kind: 'allocation', layer: needPath(s.layer, 'source.layer') };
  if (s.kind === 'since') {
    if (typeof s.checkpoint !== 'string' || !s.checkpoint) bad('source.checkpoint: expected a checkpoint name');
    return { kind: 'since', image: needPath(s.image, 'source.image'), checkpoint: s.checkpoint };
  }
  if (s.kind === 'live-bitmap') {
    for (const k of ['connection', 'node', 'name'] as const) if (typeof s[k] !== 'string' || !s[k]) bad(`source.${k}: expected a name`);
    return { kind: 'live-bitmap', connection: s.connection as string, node: s.node as string, name: s.name as string };
  }
  return bad(`source.kind: expected bitmap, allocation or since`);
}

function needRange(a: { start?: unknown; end?: unknown }, size: number): [number, number] {
  const start = needInt(a.start, 'start', 0, Number.MAX_SAFE_INTEGER);
  const end = Math.min(needInt(a.end, 'end', 0, Number.MAX_SAFE_INTEGER), size);
  if (end < start) bad('end: must not be before start');
  return [start, end];
}

export function createService(opts: ServiceOptions): Service {
  const db: Db = openDb(path.join(opts.dataDir, 'strata.db'), { nativeBinding: opts.nativeBinding });
  const history = new History(db);
  const cache = new ContentsCache();
  const listeners = new Set<EventListener>();
  const emit: EventListener = (event, payload) => {
    for (const l of listeners) l(event, payload);
  };
  let demoRunning: Promise<{ images: string[] }> | null = null;
  const jobStore = new JobStore(db);
  const operations = new Operations(db);
  const connections = new ConnectionManager({
    runtimeDir: path.join(opts.dataDir, 'run'),
    store: jobStore,
    events: {
      connections: (list) => emit('connection:changed', list),
      jobChanged: (j) => emit('job:changed', j),
      jobProgress: (j) => emit('job:progress', j),
    },
  });
  const needId = (v: unknown, what: string): string => {
    if (typeof v !== 'string' || !v || v.length > 256) bad(`${what}: expected an id`);
    return v;
  };
  const needTarget = (v: unknown): BitmapTarget => {
    const t = v as Record<string, unknown> | null;
    if (t?.kind === 'image') return { kind: 'image', image: needPath(t.image, 'target.image') };
    if (t?.kind === 'connection') {
      if (typeof t.node !== 'string' || !t.node) bad('target.node: expected a node name');
      return { kind: 'connection', connection: needId(t.connection, 'target.connection'), node: t.node };
    }
    return bad('target.kind: expected image or connection');
  };
  const needOp = (v: unknown): OpRequest => {
    const o = v as BitmapOpSpec | null;
    const name = (x: unknown, w: string) => (typeof x === 'string' && x.length > 0 && x.length < 1024 ? x : bad(`op.${w}: expected a bitmap name`));
    switch (o?.op) {
      case 'add':
        return {
          op: 'add',
          name: name(o.name, 'name'),
          persistent: o.persistent !== false,
          disabled: o.disabled === true,
          ...(o.granularity === undefined ? {} : { granularity: needInt(o.granularity, 'op.granularity', 512, 2 ** 31) }),
        };
      case 'remove':
      case 'enable':
      case 'disable':
      case 'clear':
        return { op: o.op, name: name(o.name, 'name') };
      case 'merge':
        if (!Array.isArray(o.sources) || o.sources.length === 0) bad('op.sources: expected at least one source');
        return {
          op: 'merge',
          target: name(o.target, 'target'),
          sources: o.sources.map((s, i) => ({ where: s?.where == null ? null : name(s.where, `sources[${i}].where`), name: name(s?.name, `sources[${i}].name`) })),
        };
      default:
        return bad('op.op: expected add, remove, enable, disable, clear or merge');
    }
  };
  const runtimeDir = path.join(opts.dataDir, 'run');
  const live = new LiveContents(async (connection, node, name) => {
    const s = connections.session(connection, node);
    const r = await readLiveBitmap(s.qmp, node, name, { runtimeDir, where: s.label });
    return { extents: r.extents, virtualSize: r.virtualSize };
  });
  const planStore = new PlanStore(db);
  const plans = new ServicePlans(planStore, (p) => emit('plan:changed', p), { runtimeDir, connection: (id) => connections.planConnection(id) });
  // Plans a crash left unfinished are finished now, in the background; plan:changed says how.
  const recovered = plans.recoverAll().catch(() => []);
  const needPlan = (v: unknown): PlanRequest => {
    const r = v as { kind?: unknown; params?: Record<string, unknown> } | null;
    if (r?.kind !== 'commit-with-bitmaps') bad(`kind: expected one of ${PLAN_KINDS.join(', ')}`);
    const p = r.params;
    if (!p || typeof p !== 'object') bad('params: expected an object');
    if (p.scheme !== undefined && p.scheme !== 'seed' && p.scheme !== 'libvirt') bad('params.scheme: expected seed or libvirt');
    return {
      kind: 'commit-with-bitmaps',
      params: {
        connection: needId(p.connection, 'params.connection'),
        ...(p.device === undefined ? {} : { device: needId(p.device, 'params.device') }),
        ...(p.scheme === undefined ? {} : { scheme: p.scheme as 'seed' | 'libvirt' }),
        ...(p.speed === undefined ? {} : { speed: needInt(p.speed, 'params.speed', 1, Number.MAX_SAFE_INTEGER) }),
      },
    };
  };
  const needSpec = (v: unknown): JobStartSpec => {
    const s = v as Record<string, unknown> | null;
    if (!s || (s.type !== 'block-stream' && s.type !== 'block-commit')) bad('spec.type: expected block-stream or block-commit');
    const str = (x: unknown, w: string) => (x === undefined ? undefined : typeof x === 'string' && x ? x : bad(`spec.${w}: expected a node name`));
    const speed = s.speed === undefined ? undefined : needInt(s.speed, 'spec.speed', 1, Number.MAX_SAFE_INTEGER);
    const device = str(s.device, 'device') ?? '';
    return s.type === 'block-stream'
      ? { type: 'block-stream', device, ...(speed ? { speed } : {}) }
      : { type: 'block-commit', device, topNode: str(s.topNode, 'topNode'), baseNode: str(s.baseNode, 'baseNode'), ...(speed ? { speed } : {}) };
  };

  const handlers: Handlers = {
    'app:info': () => ({ version: VERSION, mode: opts.mode, dataDir: opts.dataDir, qemuImg: qemuImgVersion(), platform: process.platform }),
    'workspace:list': () => history.listWorkspace(),
    'workspace:add': ({ path: p }) => {
      const abs = needPath(p, 'path');
      // Reading the chain first means a bad path is refused before it is remembered.
      const report = inspect(abs);
      const img = history.addImage(report.image);
      emit('chain:scanned', history.recordScan(report));
      emit('workspace:changed', history.listWorkspace());
      return { image: { ...img, lastScanAt: report.scannedAt }, report };
    },
    'workspace:remove': ({ path: p }) => {
      history.removeImage(needPath(p, 'path'));
      emit('workspace:changed', history.listWorkspace());
    },
    'chain:inspect': ({ path: p }) => {
      const report = inspect(needPath(p, 'path'));
      emit('chain:scanned', history.recordScan(report));
      return report;
    },
    'contents:density': async (a) => {
      const src = needSource(a?.source);
      const r = src.kind === 'live-bitmap' ? await live.get(src) : cache.get(src);
      const [start, end] = needRange(a, r.virtualSize);
      const d = density(r.extents, start, end, needInt(a.buckets, 'buckets', 1, MAX_BUCKETS));
      return { start, end, bucketSize: d.bucketSize, marked: d.marked, totalMarked: d.totalMarked };
    },
    'contents:extents': async (a) => {
      const src = needSource(a?.source);
      const r = src.kind === 'live-bitmap' ? await live.get(src) : cache.get(src);
      const [start, end] = needRange(a, r.virtualSize);
      return slice(r.extents, start, end, needInt(a.limit, 'limit', 1, MAX_EXTENTS));
    },
    'history:scans': (a) => history.scans(a?.image === undefined ? undefined : needPath(a.image, 'image'), a?.limit ?? 100),
    'demo:create': async () => {
      demoRunning ??= buildDemo(opts.dataDir, (step, done, total) => emit('demo:progress', { step, done, total })).finally(() => {
        demoRunning = null;
      });
      const out = await demoRunning;
      for (const img of out.images) {
        const report = inspect(img);
        history.addImage(report.image);
        emit('chain:scanned', history.recordScan(report));
      }
      emit('workspace:changed', history.listWorkspace());
      return out;
    },
    'dialog:open-image': async () => {
      if (!opts.openImageDialog) bad('the file picker is only available in the desktop app; type the image path instead');
      return opts.openImageDialog();
    },
    'connection:list': () => connections.list(),
    'connection:add-socket': (a) => connections.addSocket(needPath(a?.path, 'path')),
    'connection:scan-folder': (a) => connections.scanFolder(needPath(a?.path, 'path')),
    'connection:open-image': (a) => connections.openImage(needPath(a?.image, 'image'), a?.readOnly !== false),
    'connection:restart': (a) => connections.restart(needId(a?.id, 'id')),
    'connection:close': (a) => connections.close(needId(a?.id, 'id')),
    'connection:graph': (a) => connections.graph(needId(a?.id, 'id')),
    'job:list': (a) => connections.jobs(a?.connection === undefined ? undefined : needId(a.connection, 'connection')),
    'job:start': (a) => connections.startJob(needId(a?.connection, 'connection'), needSpec(a?.spec)),
    'job:verb': (a) => {
      const verb = a?.verb as JobVerbName;
      if (!(JOB_VERBS as readonly string[]).includes(verb)) bad(`verb: expected one of ${JOB_VERBS.join(', ')}`);
      if (verb === 'set-speed') {
        const speed = needInt(a?.speed, 'speed', 0, Number.MAX_SAFE_INTEGER);
        return connections.jobVerb(needId(a?.connection, 'connection'), needId(a?.id, 'id'), verb, { speed });
      }
      return connections.jobVerb(needId(a?.connection, 'connection'), needId(a?.id, 'id'), verb);
    },
    'history:jobs': (a) => jobStore.list(a?.limit ?? 100),
    'history:operations': (a) => operations.list(a?.limit ?? 100).map(({ plan: _plan, ...o }) => o),
    'plan:preview': (a) => plans.preview(needPlan(a)),
    'plan:start': (a) => plans.start(needPlan(a)),
    'history:plans': async (a) => {
      await recovered;
      return planStore.list(a?.limit ?? 100).map(planInfo);
    },
    'bitmap:plan': async (a) => {
      const target = needTarget(a?.target);
      const op = needOp(a?.op);
      if (target.kind === 'connection') {
        const s = connections.session(target.connection, target.node);
        const plan = await planOn({ ...s, embedded: false, log: [], close: async () => {} }, op);
        return { summary: plan.summary, qmp: plan.qmp };
      }
      const s = await openTarget({ kind: 'image', image: target.image }, { runtimeDir, readOnly: true });
      try {
        const plan = await planOn(s, op, { assumeWritable: true });
        return { summary: plan.summary, qmp: plan.qmp };
      } finally {
        await s.close();
      }
    },
    'bitmap:apply': async (a) => {
      const target = needTarget(a?.target);
      const op = needOp(a?.op);
      const r =
        target.kind === 'connection'
          ? await (async () => {
              const s = connections.session(target.connection, target.node);
              return runOnSession(s, op, operations, s.label);
            })()
          : await runBitmapOp({ kind: 'image', image: target.image }, op, operations, runtimeDir);
      return { summary: r.plan.summary, qmp: r.plan.qmp, operation: r.operationId };
    },
  };

  return {
    handlers,
    subscribe(l) {
      listeners.add(l);
      return () => listeners.delete(l);
    },
    async close() {
      await recovered;
      await connections.closeAll();
      listeners.clear();
      db.close();
    },
  };
}
