// Human-readable output: sizes, tables and extent lists.
import { humanBytes } from '../units.ts';

export { humanBytes };
import type { Out } from './output.ts';
import type { ExtentList } from '../extents.ts';

export function table(headers: string[], rows: string[][]): string {
  const w = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (r: string[]) => r.map((c, i) => (c ?? '').padEnd(w[i])).join('  ').trimEnd();
  return [line(headers), line(w.map((n) => '-'.repeat(n))), ...rows.map(line)].join('\n');
}

export function writeExtentsJson(out: Out, l: ExtentList): void {
  out.write('[');
  for (let i = 0; i < l.count; i++) {
    out.write(`${i ? ',' : ''}\n    {"start": ${l.starts[i]}, "length": ${l.ends[i] - l.starts[i]}}`);
  }
  out.write(l.count ? '\n  ]' : ']');
}

export function writeExtentsText(out: Out, l: ExtentList): void {
  out.write(`${'start'.padStart(16)}  ${'length'.padStart(16)}  end\n`);
  for (let i = 0; i < l.count; i++) {
    const s = l.starts[i];
    const e = l.ends[i];
    out.write(`${String(s).padStart(16)}  ${String(e - s).padStart(16)}  ${e}\n`);
  }
}
