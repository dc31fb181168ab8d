// Benchmarks 5 and 6: the live side.
//   5. QMP round trip (query-version) through Strata's QmpClient vs a minimal raw-socket client, on
//      the same qemu-storage-daemon (two monitors: QEMU serves one client per monitor), interleaved.
//   6. Event-to-renderer latency in browser mode: the service emits job:progress for a real
//      speed-limited block-stream; a WebSocket client (the renderer's transport, same process)
//      receives it. Emission is timestamped by wrapping service.subscribe.
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import WebSocket from 'ws';
import { QmpClient } from '../../electron/core/qmp/client.ts';
import { createService, type Service } from '../../electron/core/service.ts';
import { startBrowserServer } from '../../electron/core/server/browser-server.ts';
import { newResult, type Result } from './result.ts';
import { fmtMs, median, round, run } from './util.ts';

const log = (s: string) => process.stdout.write(s + '\n');

function quantile(xs: number[], q: number): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil(q * s.length) - 1))];
}

// ------------------------------------------------------------------------------------------ 5

/** The least a QMP client can be: newline framing, JSON.parse, one call at a time. */
class RawQmp {
  private buf = '';
  private waiting: ((msg: any) => void) | null = null;
  private lines: any[] = [];
  private seq = 0;
  private constructor(private sock: net.Socket) {
    sock.setEncoding('utf8');
    sock.on('data', (d: string) => {
      this.buf += d;
      for (let i = this.buf.indexOf('\n'); i >= 0; i = this.buf.indexOf('\n')) {
        const line = this.buf.slice(0, i);
        this.buf = this.buf.slice(i + 1);
        if (!line.trim()) continue;
        const msg = JSON.parse(line);
        if (msg.event) continue;
        const w = this.waiting;
        if (w) {
          this.waiting = null;
          w(msg);
        } else this.lines.push(msg);
      }
    });
  }

  private next(): Promise<any> {
    const m = this.lines.shift();
    if (m) return Promise.resolve(m);
    return new Promise((r) => (this.waiting = r));
  }

  static async connect(socket: string): Promise<RawQmp> {
    const s = await new Promise<net.Socket>((resolve, reject) => {
      const c = net.createConnection({ path: socket });
      c.once('connect', () => resolve(c));
      c.once('error', reject);
    });
    const q = new RawQmp(s);
    await q.next(); // greeting
    await q.execute('qmp_capabilities');
    return q;
  }

  async execute(command: string): Promise<any> {
    const id = ++this.seq;
    this.sock.write(`{"execute":"${command}","id":${id}}\n`);
    const m = await this.next();
    if (m.id !== id || m.error) throw new Error(`raw QMP ${command}: ${JSON.stringify(m)}`);
    return m.return;
  }

  close(): void {
    this.sock.destroy();
  }
}

async function waitListening(socket: string, child: ChildProcess, err: () => string): Promise<void> {
  const deadline = Date.now() + 10000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`qemu-storage-daemon exited: ${err()}`);
    if (Date.now() > deadline) throw new Error(`qemu-storage-daemon did not listen on ${socket}: ${err()}`);
    const ok = fs.existsSync(socket) && (await new Promise<boolean>((resolve) => {
      const s = net.createConnection({ path: socket });
      s.once('connect', () => {
        s.destroy();
        resolve(true);
      });
      s.once('error', () => resolve(false));
    }));
    if (ok) return;
    await new Promise((r) => setTimeout(r, 5));
  }
}

export async function bench5(opts: { blocks: number; callsPerBlock: number }): Promise<Result> {
  const r = newResult(5, "QMP query-version round trip: Strata's QmpClient vs a raw-socket client (same daemon, interleaved)", 'ratio <= 1.5');
  r.labels = { strata: 'QmpClient', qemu: 'raw socket' };
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'strata-bench5-'));
  const a = path.join(dir, 'm1.sock');
  const b = path.join(dir, 'm2.sock');
  // Two monitors: QEMU serves one client per monitor.
  const child = spawn(
    'qemu-storage-daemon',
    ['--chardev', `socket,id=m1,path=${a},server=on,wait=off`, '--monitor', 'chardev=m1', '--chardev', `socket,id=m2,path=${b},server=on,wait=off`, '--monitor', 'chardev=m2'],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  let err = '';
  child.stderr!.on('data', (d) => (err += d));
  let strata: QmpClient | null = null;
  let raw: RawQmp | null = null;
  try {
    await waitListening(a, child, () => err);
    await waitListening(b, child, () => err);
    strata = await QmpClient.connect(a);
    raw = await RawQmp.connect(b);
    const s = strata;
    const q = raw;
    const vs = await s.execute('query-version');
    const vq = await q.execute('query-version');
    const problems: string[] = [];
    if (JSON.stringify(vs) !== JSON.stringify(vq)) problems.push(`query-version differs: ${JSON.stringify(vs)} vs ${JSON.stringify(vq)}`);

    const time = async (fn: () => Promise<unknown>, n: number, into: number[]) => {
      for (let i = 0; i < n; i++) {
        const t0 = performance.now();
        await fn();
        into.push(performance.now() - t0);
      }
    };
    const strataCall = () => s.execute('query-version');
    const rawCall = () => q.execute('query-version');
    // Warm-up (JIT, socket buffers), not counted.
    await time(strataCall, 300, []);
    await time(rawCall, 300, []);
    log(`  [5] measuring ${opts.blocks} blocks of ${opts.callsPerBlock} calls a side ...`);
    const allS: number[] = [];
    const allQ: number[] = [];
    for (let blk = 0; blk < opts.blocks; blk++) {
      const bs: number[] = [];
      const bq: number[] = [];
      if (blk % 2 === 0) {
        await time(strataCall, opts.callsPerBlock, bs);
        await time(rawCall, opts.callsPerBlock, bq);
      } else {
        await time(rawCall, opts.callsPerBlock, bq);
        await time(strataCall, opts.callsPerBlock, bs);
      }
      r.strataRuns.push(median(bs));
      r.qemuRuns.push(median(bq));
      allS.push(...bs);
      allQ.push(...bq);
    }
    r.strataMs = median(allS);
    r.qemuMs = median(allQ);
    r.ratio = r.strataMs / r.qemuMs;
    r.speedup = r.qemuMs / r.strataMs;
    const p95S = quantile(allS, 0.95);
    const p95Q = quantile(allQ, 0.95);
    r.extra = {
      calls: allS.length,
      callsPerSide: allS.length,
      blocks: opts.blocks,
      callsPerBlock: opts.callsPerBlock,
      p95Ms: { strata: round(p95S, 4), raw: round(p95Q, 4) },
      qemuVersion: (vs as any)?.qemu,
    };
    r.notes.push(`${allS.length} calls a side in ${opts.blocks} interleaved blocks (the runs shown are block medians); the figures are medians of all calls`);
    r.notes.push(`p95: QmpClient ${fmtMs(p95S)}, raw socket ${fmtMs(p95Q)}`);
    if (problems.length) {
      r.status = 'ERROR';
      r.error = problems.join('; ');
    } else r.status = r.ratio <= 1.5 ? 'PASS' : 'MISS';
    return r;
  } finally {
    raw?.close();
    await strata?.close().catch(() => {});
    if (child.exitCode === null) {
      const gone = new Promise((res) => child.once('exit', res));
      child.kill('SIGTERM');
      await gone;
    }
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

// ------------------------------------------------------------------------------------------ 6

function call(ws: WebSocket, id: number, channel: string, arg: unknown): Promise<any> {
  return new Promise((resolve, reject) => {
    const onMsg = (d: WebSocket.RawData) => {
      const m = JSON.parse(String(d));
      if (m.id === id) {
        ws.off('message', onMsg);
        if (m.reply.ok) resolve(m.reply.result);
        else reject(new Error(`${channel}: ${m.reply.error.code}: ${m.reply.error.message}`));
      }
    };
    ws.on('message', onMsg);
    ws.send(JSON.stringify({ id, channel, arg }));
  });
}

export async function bench6(opts: { dataMiB: number; speedMiB: number }): Promise<Result> {
  const r = newResult(6, 'browser mode: job:progress from the core to a WebSocket client (real block-stream)', 'median < 50 ms');
  r.labels = { strata: 'median latency', qemu: '-' };
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'strata-bench6-'));
  const staticDir = path.join(dir, 'static');
  fs.mkdirSync(staticDir);
  fs.writeFileSync(path.join(staticDir, 'index.html'), '<!doctype html><title>bench</title>');
  const base = path.join(dir, 'base.qcow2');
  const top = path.join(dir, 'top.qcow2');
  run('qemu-img', ['create', '-q', '-f', 'qcow2', base, `${opts.dataMiB + 16}M`]);
  run('qemu-io', ['-c', `write -P 1 0 ${opts.dataMiB}M`, base]);
  run('qemu-img', ['create', '-q', '-f', 'qcow2', '-b', base, '-F', 'qcow2', top]);

  const service = createService({ dataDir: path.join(dir, 'data'), mode: 'browser' });
  // Emission time: the browser server's own listener is wrapped, so the stamp is taken in the same
  // emit() call, just before the server serialises and sends the event.
  // payload -> emission times (a queue, in case two events carry the same payload)
  const emitted = new Map<string, number[]>();
  let emittedCount = 0;
  const wrapped: Service = {
    ...service,
    subscribe: (l) =>
      service.subscribe((event, payload) => {
        if (event === 'job:progress') {
          const k = JSON.stringify(payload);
          const q = emitted.get(k);
          if (q) q.push(performance.now());
          else emitted.set(k, [performance.now()]);
          emittedCount++;
        }
        l(event, payload);
      }),
  };
  const server = await startBrowserServer({ service: wrapped, staticDir });
  let ws: WebSocket | null = null;
  try {
    ws = await new Promise<WebSocket>((resolve, reject) => {
      const w = new WebSocket(`ws://127.0.0.1:${server.port}/ws?token=${server.token}`, { origin: server.origin });
      w.once('open', () => resolve(w));
      w.once('error', reject);
      w.once('unexpected-response', (_req, res) => reject(new Error(`HTTP ${res.statusCode}`)));
    });
    const received: { key: string; at: number }[] = [];
    let concluded: (() => void) | null = null;
    const done = new Promise<void>((res) => (concluded = res));
    let jobId = '';
    ws.on('message', (d) => {
      const at = performance.now();
      const m = JSON.parse(String(d));
      if (m.event === 'job:progress') received.push({ key: JSON.stringify(m.payload), at });
      else if (m.event === 'job:changed' && m.payload.id === jobId && m.payload.state === 'concluded') concluded?.();
    });
    const conn = await call(ws, 1, 'connection:open-image', { image: top, readOnly: false });
    const job = await call(ws, 2, 'job:start', { connection: conn.id, spec: { type: 'block-stream', speed: opts.speedMiB * 1024 * 1024 } });
    jobId = job.id;
    log(`  [6] streaming ${opts.dataMiB} MiB at ${opts.speedMiB} MiB/s (~${(opts.dataMiB / opts.speedMiB).toFixed(0)} s) ...`);
    const t0 = performance.now();
    let timer: NodeJS.Timeout | undefined;
    try {
      await Promise.race([done, new Promise((_, rej) => (timer = setTimeout(() => rej(new Error('the job did not conclude within 120 s')), 120000)))]);
    } finally {
      clearTimeout(timer);
    }
    const jobMs = performance.now() - t0;
    await call(ws, 3, 'job:verb', { connection: conn.id, id: jobId, verb: 'dismiss' });
    await call(ws, 4, 'connection:close', { id: conn.id });

    const lat: number[] = [];
    let unmatched = 0;
    for (const x of received) {
      const e = emitted.get(x.key)?.shift();
      if (e === undefined) unmatched++;
      else lat.push(x.at - e);
    }
    const problems: string[] = [];
    if (lat.length < 10) problems.push(`only ${lat.length} job:progress events were measured`);
    if (unmatched) problems.push(`${unmatched} received events were never emitted`);
    if (emittedCount !== received.length) problems.push(`${emittedCount} emitted, ${received.length} received`);
    r.strataRuns = lat;
    r.strataMs = median(lat);
    const p95 = quantile(lat, 0.95);
    r.extra = { events: lat.length, p95Ms: round(p95, 3), maxMs: round(Math.max(...lat), 3), jobSeconds: round(jobMs / 1000, 1), dataMiB: opts.dataMiB, speedMiBps: opts.speedMiB };
    r.notes.push(`${lat.length} job:progress events over ${(jobMs / 1000).toFixed(1)} s; median ${fmtMs(r.strataMs)}, p95 ${fmtMs(p95)}, max ${fmtMs(Math.max(...lat))}`);
    r.notes.push('measured in one process: the WebSocket client shares the event loop with the core (the browser would not), so this includes waiting for the loop');
    if (problems.length) {
      r.status = 'ERROR';
      r.error = problems.join('; ');
    } else r.status = r.strataMs < 50 ? 'PASS' : 'MISS';
    return r;
  } finally {
    ws?.close();
    await server.close();
    await service.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}
