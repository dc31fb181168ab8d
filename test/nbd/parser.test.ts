// The sans-IO NBD parser, fed one byte at a time and fed lies.
import { test } from 'vitest';
import assert from 'node:assert/strict';
import { NbdReplyParser, MAX_PAYLOAD } from '../../electron/core/nbd/parser.ts';
import * as W from '../../electron/core/nbd/wire.ts';

function greeting(flags: number): Buffer {
  const b = Buffer.alloc(18);
  b.writeBigUInt64BE(W.NBDMAGIC, 0);
  b.writeBigUInt64BE(W.IHAVEOPT, 8);
  b.writeUInt16BE(flags, 16);
  return b;
}
function optReply(opt: number, type: number, data: Buffer): Buffer {
  const h = Buffer.alloc(20);
  h.writeBigUInt64BE(W.OPT_REPLY_MAGIC, 0);
  h.writeUInt32BE(opt, 8);
  h.writeUInt32BE(type, 12);
  h.writeUInt32BE(data.length, 16);
  return Buffer.concat([h, data]);
}
function chunk(flags: number, type: number, cookie: bigint, payload: Buffer): Buffer {
  const h = Buffer.alloc(20);
  h.writeUInt32BE(W.STRUCTURED_REPLY_MAGIC, 0);
  h.writeUInt16BE(flags, 4);
  h.writeUInt16BE(type, 6);
  h.writeBigUInt64BE(cookie, 8);
  h.writeUInt32BE(payload.length, 16);
  return Buffer.concat([h, payload]);
}

test('byte-at-a-time: greeting, an empty ACK, a block-status chunk', () => {
  const p = new NbdReplyParser();
  const status = Buffer.alloc(4 + 16);
  status.writeUInt32BE(7, 0);
  status.writeUInt32BE(65536, 4);
  status.writeUInt32BE(1, 8);
  status.writeUInt32BE(131072, 12);
  status.writeUInt32BE(0, 16);
  const parts = [greeting(3), optReply(W.OPT.STRUCTURED_REPLY, W.REP.ACK, Buffer.alloc(0))];
  const got: any[] = [];
  const feed = (buf: Buffer) => {
    for (const byte of buf) {
      p.push(Buffer.from([byte]));
      for (let m = p.next(); m; m = p.next()) got.push(m);
    }
  };
  for (const b of parts) feed(b);
  p.phase = 'transmission';
  feed(chunk(W.CHUNK_FLAG_DONE, W.CHUNK.BLOCK_STATUS, 42n, status));
  assert.deepEqual(got.map((m) => m.kind), ['greeting', 'option-reply', 'chunk']);
  assert.equal(got[0].flags, 3);
  assert.equal(got[1].data.length, 0);
  assert.equal(got[2].cookie, 42n);
  assert.deepEqual(got[2].payload, status);
});

test('bad magic and absurd lengths are protocol errors, never allocations', () => {
  const p = new NbdReplyParser();
  p.push(Buffer.from('NOTNBD!!NOTNBD!!xx'));
  assert.throws(() => p.next(), /not an NBD server/);
  const q = new NbdReplyParser();
  q.phase = 'transmission';
  const h = Buffer.alloc(20);
  h.writeUInt32BE(W.STRUCTURED_REPLY_MAGIC, 0);
  h.writeUInt32BE(MAX_PAYLOAD + 1, 16);
  q.push(h);
  assert.throws(() => q.next(), /reply chunk of/);
});
