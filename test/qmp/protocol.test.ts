// The sans-IO QMP core: framing, classification and limits, with no socket at all.
import { test } from 'vitest';
import assert from 'node:assert/strict';
import { QmpProtocol, MAX_LINE, VIOLATION_LINE_KEEP } from '../../electron/core/qmp/protocol.ts';

const GREETING = '{"QMP": {"version": {"qemu": {"micro": 0, "minor": 2, "major": 7}, "package": ""}, "capabilities": ["oob"]}}\r\n';

function ready(): QmpProtocol {
  const p = new QmpProtocol();
  assert.equal(p.receive(GREETING)[0].kind, 'greeting');
  const n = p.negotiate();
  assert.deepEqual(JSON.parse(n.bytes), { execute: 'qmp_capabilities', id: n.id });
  const out = p.receive(`{"return": {}, "id": "${n.id}"}\n`);
  // Each output carries the line exactly as received, for the traffic log.
  assert.deepEqual(out, [{ kind: 'return', id: n.id, value: {}, line: `{"return": {}, "id": "${n.id}"}` }]);
  assert.ok(p.isNegotiation(n.id));
  p.negotiated();
  return p;
}

test('partial lines and several messages per chunk', () => {
  const p = ready();
  const c = p.command('query-version');
  const reply = `{"return": {"qemu": {"major": 7}}, "id": "${c.id}"}\n{"event": "JOB_STATUS_CHANGE", "data": {"id": "j", "status": "running"}, "timestamp": {"seconds": 1, "microseconds": 2}}\n`;
  const bytes = Buffer.from(reply);
  const outs = [];
  for (let i = 0; i < bytes.length; i += 7) outs.push(...p.receive(bytes.subarray(i, i + 7)));
  assert.deepEqual(outs.map((o) => o.kind), ['return', 'event']);
  assert.equal((outs[1] as any).event.data.status, 'running');
  // Reassembled from 7-byte pieces, each line is the wire's, byte for byte.
  assert.deepEqual(outs.map((o) => o.line), reply.trimEnd().split('\n'));
});

test('a multi-byte character split across chunks survives', () => {
  const p = ready();
  const c = p.command('x');
  const bytes = Buffer.from(`{"return": "née", "id": "${c.id}"}\n`);
  const i = bytes.indexOf(0xc3) + 1; // split inside the 2-byte é
  const outs = [...p.receive(bytes.subarray(0, i)), ...p.receive(bytes.subarray(i))];
  assert.deepEqual(outs, [{ kind: 'return', id: c.id, value: 'née', line: `{"return": "née", "id": "${c.id}"}` }]);
});

test('errors carry the class and desc; commands get unique string ids', () => {
  const p = ready();
  const a = p.command('block-job-cancel', { device: 'nope' });
  const b = p.command('block-job-cancel', { device: 'nope' });
  assert.notEqual(a.id, b.id);
  assert.equal(typeof a.id, 'string');
  assert.deepEqual(JSON.parse(a.bytes), { execute: 'block-job-cancel', id: a.id, arguments: { device: 'nope' } });
  const line = `{"id": "${a.id}", "error": {"class": "DeviceNotActive", "desc": "No active block job on device 'nope'"}}`;
  const out = p.receive(`${line}\n`);
  assert.deepEqual(out, [{ kind: 'error', id: a.id, errorClass: 'DeviceNotActive', desc: "No active block job on device 'nope'", line }]);
});

test('garbage is fatal and closes the protocol', () => {
  const p = ready();
  const out = p.receive('this is not json\n{"event": "X"}\n');
  assert.equal(out.length, 1);
  assert.equal(out[0].kind, 'violation');
  assert.equal((out[0] as any).fatal, true);
  assert.equal(out[0].line, 'this is not json');
  assert.equal(p.state, 'closed');
  assert.deepEqual(p.receive('{"event": "X"}\n'), []);
});

test('a first message that is not a greeting is fatal', () => {
  const p = new QmpProtocol();
  const out = p.receive('{"return": {}}\n');
  assert.equal(out[0].kind, 'violation');
  assert.equal(p.state, 'closed');
});

test('a reply without id is reported but not fatal', () => {
  const p = ready();
  const out = p.receive('{"error": {"class": "GenericError", "desc": "JSON parse error"}}\n');
  assert.equal(out[0].kind, 'violation');
  assert.equal((out[0] as any).fatal, false);
  assert.equal(out[0].line, '{"error": {"class": "GenericError", "desc": "JSON parse error"}}');
  assert.equal(p.state, 'ready');
});

test('an unterminated line over the limit is fatal without waiting for its end', () => {
  const p = ready();
  const chunk = 'x'.repeat(1024 * 1024);
  let out: any[] = [];
  for (let i = 0; i <= MAX_LINE / chunk.length && out.length === 0; i++) out = p.receive(chunk);
  assert.equal(out[0].kind, 'violation');
  assert.match(out[0].why, /limit/);
  // What is kept of a hostile line is bounded.
  assert.equal(out[0].line, 'x'.repeat(VIOLATION_LINE_KEEP));
  assert.equal(p.state, 'closed');
});
