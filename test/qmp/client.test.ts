// The QMP client against a real qemu-storage-daemon, and against a fake server only for faults.
import { test } from 'vitest';
import assert from 'node:assert/strict';
import net from 'node:net';
import path from 'node:path';
import { QmpClient, type QmpTraffic } from '../../electron/core/qmp/client.ts';
import { QmpExecuteError } from '../../electron/core/qmp/errors.ts';
import { tempDir, qemuImg, type Cleanup } from '../helpers/qemu.ts';
import { startDaemon } from '../helpers/storage-daemon.ts';

test('real daemon: greeting, negotiation, commands, typed errors with QEMU class', async (t) => {
  const dir = tempDir(t);
  const img = path.join(dir, 'a.qcow2');
  qemuImg('create', '-q', '-f', 'qcow2', img, '1M');
  const d = await startDaemon(t, dir, ['--blockdev', `driver=qcow2,node-name=n0,file.driver=file,file.filename=${img}`]);
  const traffic: string[] = [];
  const entries: QmpTraffic[] = [];
  const c = await QmpClient.connect(d.socket, {
    onTraffic: (t) => {
      traffic.push(`${t.dir} ${t.line}`);
      entries.push(t);
    },
  });
  t.onTestFinished(() => c.close());
  assert.equal(c.greeting?.QMP.version.qemu.major, 7);
  const v = await c.execute<{ qemu: { major: number } }>('query-version');
  assert.equal(v.qemu.major, c.greeting?.QMP.version.qemu.major);
  const nodes = await c.execute<any[]>('query-named-block-nodes', { flat: true });
  assert.ok(nodes.some((n) => n['node-name'] === 'n0'));
  await assert.rejects(c.execute('block-dirty-bitmap-remove', { node: 'n0', name: 'nope' }), (e: any) => {
    assert.ok(e instanceof QmpExecuteError);
    assert.equal(e.code, 'E_QMP_EXECUTE');
    assert.equal(e.errorClass, 'GenericError');
    assert.equal(e.command, 'block-dirty-bitmap-remove');
    // What was sent and what QEMU answered, exactly as they were on the wire.
    const sent = JSON.parse(e.sent);
    assert.deepEqual({ execute: sent.execute, arguments: sent.arguments }, { execute: 'block-dirty-bitmap-remove', arguments: { node: 'n0', name: 'nope' } });
    const received = JSON.parse(e.received);
    assert.equal(received.id, sent.id);
    assert.equal(received.error.class, 'GenericError');
    assert.match(e.received, /"class": "GenericError"/); // QEMU's own spacing: the raw line

    assert.ok(traffic.includes(`in ${e.received}`));
    return true;
  });
  await assert.rejects(c.execute('no-such-command'), (e: any) => e.errorClass === 'CommandNotFound');
  // Concurrent calls are matched by id, whatever order they return in.
  const many = await Promise.all(Array.from({ length: 20 }, () => c.execute<{ qemu: unknown }>('query-version')));
  assert.equal(many.length, 20);
  assert.ok(traffic.some((l) => l.startsWith('out {"execute":"qmp_capabilities"')));
  // The greeting as QEMU wrote it (with its spaces), not re-serialized.
  assert.match(traffic[0], /^in \{"QMP": \{"version": \{"qemu": \{"micro": \d+, "minor": \d+, "major": \d+\}/);
  // A call's lines carry its id and its caller's tag, both ways.
  await c.execute('query-version', undefined, { tag: { operation: 7 } });
  const tagged = entries.filter((x) => x.tag?.operation === 7);
  assert.deepEqual(tagged.map((x) => x.dir), ['out', 'in']);
  assert.equal(tagged[0].call, tagged[1].call);
  assert.equal(JSON.parse(tagged[1].line).id, tagged[0].call);
});

test('real daemon: a second client waits silently; we report a busy monitor', async (t) => {
  const d = await startDaemon(t, tempDir(t));
  const first = await QmpClient.connect(d.socket);
  t.onTestFinished(() => first.close());
  await assert.rejects(QmpClient.connect(d.socket, { connectTimeoutMs: 300 }), (e: any) => e.code === 'E_QMP_NEGOTIATION' && /another client/.test(e.message));
});

test('real daemon: kill -9 rejects pending calls as interrupted and the client is closed', async (t) => {
  const d = await startDaemon(t, tempDir(t));
  const c = await QmpClient.connect(d.socket);
  const closed = new Promise<string>((r) => c.onClose(r));
  // A job-wait that will never be answered, then the daemon dies.
  const pending = c.waitEvent((e) => e.event === 'NEVER', 10000);
  d.child.kill('SIGKILL');
  await assert.rejects(pending, (e: any) => e.code === 'E_QMP_INTERRUPTED');
  // The kernel reports the peer's death as a close or a reset, depending on timing.
  assert.match(await closed, /closed|ECONNRESET/);
  await assert.rejects(c.execute('query-version'), (e: any) => e.code === 'E_QMP_STATE');
});

test('connect errors name the socket', async (t) => {
  const dir = tempDir(t);
  const missing = path.join(dir, 'none.sock');
  await assert.rejects(QmpClient.connect(missing), (e: any) => e.code === 'E_QMP_CONNECT' && e.message.startsWith(missing) && /no such socket/.test(e.message));
});

// --- fault injection: a fake server that misbehaves on purpose ---

const GREETING = '{"QMP": {"version": {"qemu": {"micro": 0, "minor": 2, "major": 7}, "package": ""}, "capabilities": []}}\n';

/** `start`: the greeting to send ('' for none), or what to do with a new connection instead. */
async function fake(t: Cleanup, onLine: (line: string, sock: net.Socket) => void, start: string | ((sock: net.Socket) => void) = GREETING): Promise<string> {
  const sockPath = path.join(tempDir(t), 'fake.sock');
  const server = net.createServer((sock) => {
    if (typeof start === 'function') start(sock);
    else if (start) sock.write(start);
    let buf = '';
    sock.on('data', (d) => {
      buf += d;
      let nl;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        const m = JSON.parse(line);
        if (m.execute === 'qmp_capabilities') sock.write(JSON.stringify({ return: {}, id: m.id }) + '\n');
        else onLine(line, sock);
      }
    });
    sock.on('error', () => {});
  });
  await new Promise<void>((r) => server.listen(sockPath, r));
  t.onTestFinished(() => {
    server.close();
  });
  return sockPath;
}

test('fault: garbage mid-session is a protocol error for pending calls', async (t) => {
  const sock = await fake(t, (_l, s) => s.write('}}} not json\n'));
  const c = await QmpClient.connect(sock);
  await assert.rejects(c.execute('query-version'), (e: any) => e.code === 'E_QMP_PROTOCOL' && /not JSON/.test(e.message));
  assert.equal(c.state, 'closed');
});

test('fault: disconnect in the middle of a reply', async (t) => {
  const sock = await fake(t, (_l, s) => s.end('{"return": {"qemu": {"maj'));
  const c = await QmpClient.connect(sock);
  await assert.rejects(c.execute('query-version'), (e: any) => e.code === 'E_QMP_INTERRUPTED' && /query-version/.test(e.message));
});

test('fault: unknown ids are ignored; the right reply still resolves', async (t) => {
  const sock = await fake(t, (line, s) => {
    const m = JSON.parse(line);
    s.write(JSON.stringify({ return: 'stray', id: 'someone-else' }) + '\n');
    s.write(JSON.stringify({ return: 'mine', id: m.id }) + '\n');
  });
  const c = await QmpClient.connect(sock);
  t.onTestFinished(() => c.close());
  assert.equal(await c.execute('x'), 'mine');
});

test('fault: a slow reply times out; a late answer is dropped; the client stays usable', async (t) => {
  let n = 0;
  const sock = await fake(t, (line, s) => {
    const m = JSON.parse(line);
    const delay = n++ === 0 ? 300 : 0;
    setTimeout(() => s.write(JSON.stringify({ return: m.execute, id: m.id }) + '\n'), delay);
  });
  const c = await QmpClient.connect(sock);
  t.onTestFinished(() => c.close());
  await assert.rejects(c.execute('slow', undefined, { timeoutMs: 50 }), (e: any) => e.code === 'E_QMP_TIMEOUT');
  assert.equal(await c.execute('fast'), 'fast');
  await new Promise((r) => setTimeout(r, 350));
  assert.equal(await c.execute('again'), 'again');
});

test('fault: no greeting at all, and a wrong first message', async (t) => {
  const silent = await fake(t, () => {}, '');
  await assert.rejects(QmpClient.connect(silent, { connectTimeoutMs: 200 }), (e: any) => e.code === 'E_QMP_NEGOTIATION');
  const wrong = await fake(t, () => {}, '{"return": {}}\n');
  await assert.rejects(QmpClient.connect(wrong), (e: any) => e.code === 'E_QMP_PROTOCOL' || e.code === 'E_QMP_NEGOTIATION');
});

test('fault: a busy monitor, silent or closing the connection before any greeting, gives one error', { timeout: 10_000 }, async (t) => {
  const busy = (e: any) => e.code === 'E_QMP_NEGOTIATION' && /another client holds the monitor/.test(e.message);
  const silent = await fake(t, () => {}, '');
  await assert.rejects(QmpClient.connect(silent, { connectTimeoutMs: 200 }), busy);
  const closing = await fake(t, () => {}, (s) => s.end());
  await assert.rejects(QmpClient.connect(closing, { connectTimeoutMs: 60_000 }), busy);
});

const ID_LESS_ERROR = JSON.stringify({ error: { class: 'GenericError', desc: 'JSON parse error, invalid keyword' } }) + '\n';

// The test's own timeout is far below the call timeout: only an immediate failure passes.
test('fault: an error reply without id fails the one pending call at once; the client stays usable', { timeout: 10_000 }, async (t) => {
  let n = 0;
  const sock = await fake(t, (line, s) => s.write(n++ === 0 ? ID_LESS_ERROR : JSON.stringify({ return: 'ok', id: JSON.parse(line).id }) + '\n'));
  const c = await QmpClient.connect(sock, { callTimeoutMs: 60_000 });
  t.onTestFinished(() => c.close());
  await assert.rejects(c.execute('query-version'), (e: any) => {
    assert.ok(e instanceof QmpExecuteError);
    assert.equal(e.command, 'query-version');
    assert.equal(e.errorClass, 'GenericError');
    assert.match(e.message, /JSON parse error/);
    return true;
  });
  assert.equal(await c.execute('query-version'), 'ok');
});

test('fault: an error reply without id while several calls are pending fails them all at once', { timeout: 10_000 }, async (t) => {
  const ids: string[] = [];
  let late: (() => void) | undefined;
  const sock = await fake(t, (line, s) => {
    const id = JSON.parse(line).id;
    if (ids.push(id) === 2) {
      s.write(ID_LESS_ERROR);
      late = () => s.write(JSON.stringify({ return: 'late', id: ids[1] }) + '\n');
    } else if (ids.length > 2) s.write(JSON.stringify({ return: 'ok', id }) + '\n');
  });
  const c = await QmpClient.connect(sock, { callTimeoutMs: 60_000 });
  t.onTestFinished(() => c.close());
  const unknown = (e: any) => e.code === 'E_QMP_PROTOCOL' && /without id.*GenericError: JSON parse error.*2 calls were pending/.test(e.message);
  await Promise.all([assert.rejects(c.execute('first'), unknown), assert.rejects(c.execute('second'), unknown)]);
  // A real reply that still comes for one of them is dropped; the next call is answered.
  late!();
  assert.equal(await c.execute('third'), 'ok');
});

test('calls before negotiation finished or after close are state errors', async (t) => {
  const sock = await fake(t, (line, s) => s.write(JSON.stringify({ return: {}, id: JSON.parse(line).id }) + '\n'));
  const c = await QmpClient.connect(sock);
  await c.close();
  await assert.rejects(c.execute('query-version'), (e: any) => e.code === 'E_QMP_STATE' && /closed/.test(e.message));
});
