// A file read as a raw disk that probably is not one: QEMU reads any file as raw, so a text file or
// an archive given by mistake would be shown as a tiny disk. Warnings only: a raw disk can hold any
// bytes. Reads at most the first 512 bytes.
import type { ImageFile } from './image-file.ts';

const SIGNATURES: [string, Buffer][] = [
  ['a gzip archive', Buffer.from([0x1f, 0x8b])],
  ['a zip archive', Buffer.from('PK\x03\x04', 'latin1')],
  ['an xz archive', Buffer.from([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00])],
  ['a bzip2 archive', Buffer.from('BZh', 'latin1')],
  ['a zstd archive', Buffer.from([0x28, 0xb5, 0x2f, 0xfd])],
  ['an ELF program', Buffer.from('\x7fELF', 'latin1')],
  ['a PDF document', Buffer.from('%PDF', 'latin1')],
  ['an SQLite database', Buffer.from('SQLite format 3\0', 'latin1')],
];

/** Plain-words doubts about a file read as raw, or none. */
export function rawWarnings(file: ImageFile): string[] {
  const out: string[] = [];
  if (file.size % 512 !== 0) out.push(`its size (${file.size} bytes) is not a whole number of 512-byte sectors, as a disk's would be; QEMU pads the last sector with zeroes`);
  if (file.size === 0) return out;
  const head = file.read(0, Math.min(file.size, 512), 'first sector');
  const sig = SIGNATURES.find(([, m]) => head.length >= m.length && head.subarray(0, m.length).equals(m));
  if (sig) out.push(`it starts like ${sig[0]}, not a disk`);
  else if (looksLikeText(head)) out.push('it starts with text, not a disk (a disk starts with a boot sector or zeroes)');
  return out;
}

function looksLikeText(b: Buffer): boolean {
  if (b.every((x) => x === 0)) return false;
  let printable = 0;
  for (const x of b) {
    if (x === 0) return false;
    if (x === 9 || x === 10 || x === 13 || (x >= 0x20 && x < 0x7f) || x >= 0x80) printable++;
  }
  return printable === b.length;
}
