// NBD wire constants and request encoders (doc/proto.md in the NBD project): fixed newstyle
// handshake, structured replies, metadata contexts, block status.

export const NBDMAGIC = 0x4e42444d41474943n;
export const IHAVEOPT = 0x49484156454f5054n;
export const OPT_REPLY_MAGIC = 0x0003e889045565a9n;
export const REQUEST_MAGIC = 0x25609513;
export const SIMPLE_REPLY_MAGIC = 0x67446698;
export const STRUCTURED_REPLY_MAGIC = 0x668e33ef;

export const FLAG_FIXED_NEWSTYLE = 1 << 0;
export const FLAG_NO_ZEROES = 1 << 1;

export const OPT = { EXPORT_NAME: 1, ABORT: 2, LIST: 3, INFO: 6, GO: 7, STRUCTURED_REPLY: 8, LIST_META_CONTEXT: 9, SET_META_CONTEXT: 10 } as const;
export const REP = { ACK: 1, SERVER: 2, INFO: 3, META_CONTEXT: 4 } as const;
export const REP_ERR_BIT = 0x80000000;
export const REP_ERRORS: Record<number, string> = {
  1: 'unsupported option',
  2: 'forbidden by policy',
  3: 'invalid',
  4: 'unsupported on this platform',
  5: 'TLS required',
  6: 'unknown export',
  7: 'server shutting down',
  8: 'block size required',
  9: 'too big',
};
export const INFO_EXPORT = 0;

export const CMD = { READ: 0, DISC: 2, BLOCK_STATUS: 7 } as const;
export const CMD_FLAG_REQ_ONE = 1 << 3;

export const CHUNK = { NONE: 0, OFFSET_DATA: 1, OFFSET_HOLE: 2, BLOCK_STATUS: 5, ERROR: 0x8001, ERROR_OFFSET: 0x8002 } as const;
export const CHUNK_FLAG_DONE = 1;

/** Block status requests stay under 4 GiB (the length is 32 bits; QEMU also caps it). */
export const MAX_STATUS_REQUEST = 0x80000000;

export function clientFlags(serverFlags: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(FLAG_FIXED_NEWSTYLE | (serverFlags & FLAG_NO_ZEROES));
  return b;
}

export function option(opt: number, data: Buffer = Buffer.alloc(0)): Buffer {
  const b = Buffer.alloc(16 + data.length);
  b.writeBigUInt64BE(IHAVEOPT, 0);
  b.writeUInt32BE(opt, 8);
  b.writeUInt32BE(data.length, 12);
  data.copy(b, 16);
  return b;
}

function str(s: string): Buffer {
  const body = Buffer.from(s, 'utf8');
  const len = Buffer.alloc(4);
  len.writeUInt32BE(body.length);
  return Buffer.concat([len, body]);
}

export function setMetaContext(exportName: string, queries: string[]): Buffer {
  const n = Buffer.alloc(4);
  n.writeUInt32BE(queries.length);
  return option(OPT.SET_META_CONTEXT, Buffer.concat([str(exportName), n, ...queries.map(str)]));
}

export function go(exportName: string): Buffer {
  const none = Buffer.alloc(2); // no extra info requests: NBD_INFO_EXPORT always comes
  return option(OPT.GO, Buffer.concat([str(exportName), none]));
}

export function command(type: number, cookie: bigint, offset: number, length: number, flags = 0): Buffer {
  const b = Buffer.alloc(28);
  b.writeUInt32BE(REQUEST_MAGIC, 0);
  b.writeUInt16BE(flags, 4);
  b.writeUInt16BE(type, 6);
  b.writeBigUInt64BE(cookie, 8);
  b.writeBigUInt64BE(BigInt(offset), 16);
  b.writeUInt32BE(length, 24);
  return b;
}
