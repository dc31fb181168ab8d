// The live side: every QEMU Strata talks to (its own storage daemons for offline images, and
// running VMs' QMP sockets), each with one QMP connection and one job engine. Pushes connection
// changes, job state changes and throttled progress to whoever listens (the service).
import fs from 'node:fs';
import path from 'node:path';
import { QmpClient } from '../qmp/client.ts';
import { StorageDaemon } from '../daemon/storage-daemon.ts';
import { JobEngine, type JobStart, type JobView } from '../jobs/engine.ts';
import { jobStartArguments } from '../jobs/start-command.ts';
import type { JobStore } from '../store/jobs.ts';
import type { QmpTrafficLog, TrafficSession } from '../store/qmp-traffic.ts';
import type { QmpLogLine } from '../history/contract.ts';
import type { ConnectionInfo, JobInfo, JobStartSpec, JobVerbName } from '../contract.ts';
import { blockGraph } from './block-graph.ts';
import { queryNamedNodes } from '../qmp/named-nodes.ts';
import { StrataError } from '../errors.ts';
import { pickHolders, readHeldLayer } from './live-layers.ts';
import type { LiveLayerFacts } from '../checkpoints.ts';

/** A file of a chain that a connected QEMU holds open, and as which node. */
export interface Holder {
  file: string;
  connection: string;
  label: string;
  kind: ConnectionInfo['kind'];
  node: string;
  readOnly: boolean;
}

interface Conn {
  info: ConnectionInfo;
  qmp: QmpClient | null;
  engine: JobEngine | null;
  daemon: StorageDaemon | null;
  lastJobState: Map<string, string>;
  /** this connection's traffic-log session (a new one after each restart) */
  traffic: TrafficSession | null;
}

export interface ManagerEvents {
  connections(list: ConnectionInfo[]): void;
  jobChanged(job: JobInfo): void;
  jobProgress(job: JobInfo): void;
}

export class ConnectionManager {
  private conns = new Map<string, Conn>();
  private seq = 0;

  constructor(
    private opts: { runtimeDir: string; store?: JobStore; traffic?: QmpTrafficLog; events: ManagerEvents },
  ) {}

  list(): ConnectionInfo[] {
    return [...this.conns.values()].map((c) => ({ ...c.info }));
  }

  private changed(): void {
    this.opts.events.connections(this.list());
  }

  private get(id: string): Conn {
    const c = this.conns.get(id);
    if (!c) throw new StrataError('E_BAD_INPUT', `no connection '${id}'`);
    return c;
  }

  private live(id: string): Conn & { qmp: QmpClient; engine: JobEngine } {
    const c = this.get(id);
    if (c.info.state !== 'connected' || !c.qmp || !c.engine) {
      throw new StrataError('E_QMP_STATE', `${c.info.label}: not connected (${c.info.state}${c.info.error ? `: ${c.info.error}` : ''})`);
    }
    return c as Conn & { qmp: QmpClient; engine: JobEngine };
  }

  private attach(c: Conn, qmp: QmpClient): void {
    c.qmp = qmp;
    const v = qmp.greeting?.QMP.version.qemu;
    c.info.qemuVersion = v ? `${v.major}.${v.minor}.${v.micro}` : null;
    c.info.state = 'connected';
    c.info.error = null;
    c.engine = new JobEngine(qmp, {
      connection: c.info.label,
      store: this.opts.store,
      session: c.traffic?.id ?? null,
      onUpdate: (j) => this.jobUpdate(c, j),
    });
    qmp.onClose((why) => {
      c.traffic?.close(why || 'the connection closed');
      if (c.info.state === 'closed') return;
      c.info.state = 'lost';
      c.info.error = c.daemon?.exited
        ? `qemu-storage-daemon exited (${c.daemon.exited.signal ?? `code ${c.daemon.exited.code}`})${c.daemon.exited.stderr ? `: ${c.daemon.exited.stderr}` : ''}`
        : why || 'the connection to QEMU closed';
      this.changed();
    });
  }

  private jobUpdate(c: Conn, j: JobView): void {
    const info: JobInfo = { connection: c.info.id, ...j };
    const before = c.lastJobState.get(j.id);
    c.lastJobState.set(j.id, j.state + (j.error ?? ''));
    if (before !== j.state + (j.error ?? '')) this.opts.events.jobChanged(info);
    else this.opts.events.jobProgress(info);
  }

  private newConn(kind: ConnectionInfo['kind'], label: string, socket: string, image: string | null, readOnly: boolean): Conn {
    const id = `${kind}-${++this.seq}`;
    const c: Conn = {
      info: { id, kind, label, socket, image, readOnly, state: 'connecting', error: null, qemuVersion: null, pid: null },
      qmp: null,
      engine: null,
      daemon: null,
      lastJobState: new Map(),
      traffic: null,
    };
    this.conns.set(id, c);
    return c;
  }

  async addSocket(socketPath: string): Promise<ConnectionInfo> {
    const p = path.resolve(socketPath);
    const existing = [...this.conns.values()].find((c) => c.info.kind === 'socket' && c.info.socket === p && c.info.state === 'connected');
    if (existing) return { ...existing.info };
    const traffic = this.opts.traffic?.open(p, p) ?? null;
    const qmp = await QmpClient.connect(p, { connectTimeoutMs: 3000, onTraffic: traffic?.sink }).catch((e) => {
      traffic?.close(`could not connect: ${(e as Error).message}`);
      throw e;
    });
    const c = this.newConn('socket', p, p, null, false);
    c.traffic = traffic;
    this.attach(c, qmp);
    await c.engine!.sync().catch(() => {});
    this.changed();
    return { ...c.info };
  }

  /** Sockets in a folder that answer as QMP monitors; the ones that do not are skipped, not errors. */
  async scanFolder(dir: string): Promise<ConnectionInfo[]> {
    let names: string[];
    try {
      names = fs.readdirSync(dir);
    } catch (e) {
      throw new StrataError('E_NOT_FOUND', `${dir}: cannot read the folder (${(e as NodeJS.ErrnoException).code})`, { file: dir });
    }
    const found: ConnectionInfo[] = [];
    for (const n of names.filter((x) => /\.(sock|qmp)$/.test(x)).sort()) {
      const p = path.join(dir, n);
      try {
        if (!fs.statSync(p).isSocket()) continue;
        found.push(await this.addSocket(p));
      } catch {
        // not a QMP monitor, or busy with another client: skipped
      }
    }
    return found;
  }

  async openImage(image: string, readOnly: boolean): Promise<ConnectionInfo> {
    const abs = path.resolve(image);
    const c = this.newConn('daemon', abs, '', abs, readOnly);
    try {
      await this.startDaemon(c);
    } catch (e) {
      this.conns.delete(c.info.id);
      throw e;
    }
    this.changed();
    return { ...c.info };
  }

  private async startDaemon(c: Conn): Promise<void> {
    const traffic = this.opts.traffic?.open(c.info.label, `qemu-storage-daemon for ${c.info.image}`) ?? null;
    const d = await StorageDaemon.start({ image: c.info.image!, runtimeDir: this.opts.runtimeDir, readOnly: c.info.readOnly, onTraffic: traffic?.sink }).catch((e) => {
      traffic?.close(`could not start: ${(e as Error).message}`);
      throw e;
    });
    c.traffic = traffic;
    c.daemon = d;
    c.info.socket = d.socket;
    c.info.pid = d.pid ?? null;
    this.attach(c, d.qmp);
    d.onExit((e) => {
      if (!e.expected && c.info.state !== 'closed') {
        c.info.state = 'lost';
        c.info.error = `qemu-storage-daemon exited unexpectedly (${e.signal ?? `code ${e.code}`})${e.stderr ? `: ${e.stderr}` : ''}`;
        this.changed();
      }
    });
  }

  async restart(id: string): Promise<ConnectionInfo> {
    const c = this.get(id);
    if (c.info.state === 'connected') return { ...c.info };
    c.engine?.close();
    c.info.state = 'connecting';
    this.changed();
    try {
      if (c.info.kind === 'daemon') await this.startDaemon(c);
      else {
        const traffic = this.opts.traffic?.open(c.info.label, c.info.socket) ?? null;
        const qmp = await QmpClient.connect(c.info.socket, { connectTimeoutMs: 3000, onTraffic: traffic?.sink }).catch((e) => {
          traffic?.close(`could not connect: ${(e as Error).message}`);
          throw e;
        });
        c.traffic = traffic;
        this.attach(c, qmp);
        await c.engine!.sync().catch(() => {});
      }
    } catch (e) {
      c.info.state = 'lost';
      c.info.error = (e as Error).message;
      this.changed();
      throw e;
    }
    this.changed();
    return { ...c.info };
  }

  async close(id: string): Promise<void> {
    const c = this.get(id);
    c.info.state = 'closed';
    c.engine?.close();
    if (c.daemon) await c.daemon.stop();
    else await c.qmp?.close();
    this.conns.delete(id);
    this.changed();
  }

  /** The live QMP client of a connection, and what a plan journal needs to find it again. */
  /**
   * Which connected QEMU (Strata's own daemon or a VM) holds each of these files, and as which node:
   * in-use bitmaps on disk are expected then (the live states are that QEMU's), and changes must go
   * through it (a second QEMU could not take the image's lock).
   */
  async holders(files: string[]): Promise<Holder[]> {
    const want = new Set(files);
    const out: Holder[] = [];
    for (const c of this.conns.values()) {
      if (c.info.state !== 'connected' || !c.qmp) continue;
      let nodes: any[];
      try {
        nodes = await queryNamedNodes(c.qmp, c.info.label);
      } catch {
        continue; // busy (a finished stream) or gone: it says so in Connections
      }
      for (const n of nodes) {
        if (!want.has(n.file) || (n.drv !== 'qcow2' && n.drv !== 'raw')) continue;
        out.push({ file: n.file, connection: c.info.id, label: c.info.label, kind: c.info.kind, node: n['node-name'], readOnly: n.ro === true });
      }
    }
    return out;
  }

  /**
   * The held layers as their QEMU sees them (keyed by file), one holder per file, read one after the
   * other (one QEMU runs one NBD server at a time). A layer that cannot be read live says why.
   */
  async readHeld(held: Holder[]): Promise<Map<string, LiveLayerFacts>> {
    const out = new Map<string, LiveLayerFacts>();
    for (const h of pickHolders(held)) {
      const c = this.conns.get(h.connection);
      if (!c?.qmp || c.info.state !== 'connected') continue;
      out.set(h.file, await readHeldLayer(c.qmp, h, this.opts.runtimeDir));
    }
    return out;
  }

  /** Who holds which of `files`, and the held ones as their QEMU sees them (undefined: none held). */
  async heldAndLive(files: string[]): Promise<{ held: Holder[]; live: Map<string, LiveLayerFacts> | undefined }> {
    const held = await this.holders(files);
    return { held, live: held.length ? await this.readHeld(held) : undefined };
  }

  /** The connection as a plan runs on it: its client, its one job engine, and where a restart finds it. */
  planConnection(id: string): { qmp: QmpClient; engine: JobEngine; target: { socket: string; image: string | null; daemonPid: number | null } } {
    const c = this.live(id);
    return { qmp: c.qmp, engine: c.engine, target: { socket: c.info.socket, image: c.info.image, daemonPid: c.daemon ? (c.info.pid ?? null) : null } };
  }

  /** The live QMP client and its node, for a bitmap change on this connection. */
  session(id: string, node: string): { qmp: QmpClient; node: string; label: string } {
    const c = this.live(id);
    return { qmp: c.qmp, node, label: c.info.label };
  }

  /** The newest lines of a connection's QMP traffic (its current session), oldest first. */
  traffic(id: string, limit?: number): QmpLogLine[] {
    const c = this.get(id);
    return c.traffic && this.opts.traffic ? this.opts.traffic.recent(c.traffic.id, limit) : [];
  }

  graph(id: string) {
    return blockGraph(this.live(id).qmp);
  }

  jobs(connection?: string): JobInfo[] {
    const out: JobInfo[] = [];
    for (const c of this.conns.values()) {
      if (connection && c.info.id !== connection) continue;
      for (const j of c.engine?.list() ?? []) out.push({ connection: c.info.id, ...j });
    }
    return out;
  }

  async startJob(connection: string, spec: JobStartSpec): Promise<JobInfo> {
    const c = this.live(connection);
    const start = jobStartArguments(spec);
    const j = await c.engine.start({ type: start.type, ...start.arguments } as JobStart);
    return { connection, ...j };
  }

  async jobVerb(connection: string, id: string, verb: JobVerbName, extra: Record<string, unknown> = {}): Promise<void> {
    await this.live(connection).engine.verb(id, verb, extra);
  }

  async closeAll(): Promise<void> {
    for (const id of [...this.conns.keys()]) await this.close(id).catch(() => {});
  }
}
