// Human-readable numbers for people who also want the exact figure (shown in titles).

/** Binary units, each 1024 of the one before. */
export const BINARY_UNITS = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];

export function formatBytes(n: number | null | undefined): string {
  if (n === null || n === undefined || !Number.isFinite(n)) return '—';
  if (n < 1024) return `${n} B`;
  let v = n;
  let u = 0;
  while (v >= 1024 && u < BINARY_UNITS.length - 1) {
    v /= 1024;
    u++;
  }
  const digits = v >= 100 || Number.isInteger(v) ? 0 : v >= 10 ? 1 : 2;
  // Trim "1.50" to "1.5" but keep "1.05".
  const s = v.toFixed(digits).replace(/(\.\d*?)0+$/, '$1').replace(/\.$/, '');
  return `${s} ${BINARY_UNITS[u]}`;
}

const groups = new Intl.NumberFormat('en-US');

export function exactBytes(n: number | null | undefined): string {
  if (n === null || n === undefined) return 'unknown';
  return `${groups.format(n)} bytes`;
}

export function formatInt(n: number): string {
  return groups.format(n);
}

/**
 * A byte range [start, end) for people: "192 KiB – 256 KiB". Where both ends read the same at the
 * usual precision ("4.06 GiB – 4.06 GiB") both are written in the unit of the end with as many
 * decimals as it takes to tell them apart, and as exact bytes when even six do not.
 */
export function formatByteRange(start: number, end: number): string {
  const a = formatBytes(start);
  const b = formatBytes(end);
  if (a !== b) return `${a} – ${b}`;
  let u = 0;
  while (u < BINARY_UNITS.length - 1 && end >= 1024 ** (u + 1)) u++;
  for (let digits = 3; u > 0 && digits <= 6; digits++) {
    const x = (start / 1024 ** u).toFixed(digits);
    const y = (end / 1024 ** u).toFixed(digits);
    if (x !== y) return `${x} ${BINARY_UNITS[u]} – ${y} ${BINARY_UNITS[u]}`;
  }
  return `${groups.format(start)} – ${groups.format(end)} B`;
}

export function formatPercent(part: number, whole: number): string {
  if (!whole) return '0%';
  const p = (part / whole) * 100;
  if (p > 0 && p < 0.1) return '<0.1%';
  return `${p >= 10 || p === 0 ? Math.round(p) : p.toFixed(1)}%`;
}

export function basename(p: string): string {
  const i = p.lastIndexOf('/');
  return i >= 0 ? p.slice(i + 1) : p;
}

export function dirname(p: string): string {
  const i = p.lastIndexOf('/');
  return i > 0 ? p.slice(0, i) : '/';
}

const timeFmt = new Intl.DateTimeFormat(undefined, { hour: '2-digit', minute: '2-digit', second: '2-digit' });
const dateTimeFmt = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium', timeStyle: 'medium' });

export function formatTime(iso: string): string {
  return timeFmt.format(new Date(iso));
}

export function formatDateTime(iso: string): string {
  return dateTimeFmt.format(new Date(iso));
}

/** "just now", "5 min ago", "3 h ago", else the date. */
export function formatAgo(iso: string, now = Date.now()): string {
  const s = Math.round((now - new Date(iso).getTime()) / 1000);
  if (s < 45) return 'just now';
  if (s < 3600) return `${Math.round(s / 60)} min ago`;
  if (s < 86400) return `${Math.round(s / 3600)} h ago`;
  return formatDateTime(iso);
}

/** "850 ms", "12 s", "3 min 20 s", "2 h 5 min". */
export function formatDuration(seconds: number | null | undefined): string {
  if (seconds === null || seconds === undefined || !Number.isFinite(seconds) || seconds < 0) return '—';
  if (seconds < 1) return `${Math.round(seconds * 1000)} ms`;
  if (seconds < 60) return `${seconds < 10 ? (Math.round(seconds * 10) / 10).toString() : Math.round(seconds)} s`;
  const m = Math.floor(seconds / 60);
  if (m < 60) {
    const s = Math.round(seconds - m * 60);
    return s ? `${m} min ${s} s` : `${m} min`;
  }
  const h = Math.floor(m / 60);
  return m % 60 ? `${h} h ${m % 60} min` : `${h} h`;
}

/** Bytes per second as MiB/s (what people type as a speed limit). */
export function formatRate(bytesPerSecond: number | null | undefined): string {
  if (bytesPerSecond === null || bytesPerSecond === undefined || !Number.isFinite(bytesPerSecond)) return '—';
  const mib = bytesPerSecond / (1024 * 1024);
  return `${mib >= 100 ? Math.round(mib) : mib >= 10 ? mib.toFixed(1) : mib.toFixed(2)} MiB/s`;
}

/** HH:MM:SS.mmm, for a job's state changes that come fractions of a second apart. */
const timeMsFmt = new Intl.DateTimeFormat(undefined, { hour: '2-digit', minute: '2-digit', second: '2-digit', fractionalSecondDigits: 3 });
export function formatTimeMs(iso: string): string {
  return timeMsFmt.format(new Date(iso));
}
