// The building blocks of every channel's argument schema (valibot), and the one function that checks
// an argument against its schema. A channel's validator and its TypeScript type are one definition:
// each feature's contract.ts defines the schema and derives the type with v.InferOutput.
// No Node imports: the renderer type-checks the feature contracts (it imports their types).
import * as v from 'valibot';
import { StrataError } from './errors.ts';

export const MAX_PATH = 4096;
export const MAX_ID = 256;
/** QEMU's limit for a bitmap name (BDRV_BITMAP_MAX_NAME_SIZE) */
export const MAX_BITMAP_NAME = 1023;

const noNul = (s: string) => !s.includes('\0');

/** path.posix.normalize for an absolute path (Strata runs where QEMU does: POSIX paths). */
export function normalizeAbsolute(p: string): string {
  const segs: string[] = [];
  for (const s of p.split('/')) {
    if (s === '' || s === '.') continue;
    if (s === '..') segs.pop();
    else segs.push(s);
  }
  const out = '/' + segs.join('/');
  return p.endsWith('/') && out !== '/' ? out + '/' : out;
}

/** An absolute file path, normalized; no NUL, at most 4096 characters. */
export const absPath = () =>
  v.pipe(
    v.string('expected an absolute file path'),
    v.minLength(1, 'expected an absolute file path'),
    v.maxLength(MAX_PATH, `expected an absolute file path of at most ${MAX_PATH} characters`),
    v.check(noNul, 'expected an absolute file path (no NUL bytes)'),
    v.check((s) => s.startsWith('/'), (i) => `'${String(i.input)}' is not an absolute path: expected an absolute file path`),
    v.transform(normalizeAbsolute),
  );

/** A non-empty string of at most `max` characters without NUL: ids, node names, bitmap names. */
export const name = (what: string, max: number) =>
  v.pipe(
    v.string(`expected ${what}`),
    v.minLength(1, `expected ${what}`),
    v.maxLength(max, `expected ${what} of at most ${max} characters`),
    v.check(noNul, `expected ${what} (no NUL bytes)`),
  );

export const id = () => name('an id', MAX_ID);
export const nodeName = () => name('a node name', MAX_ID);
/** UTF-8 bytes of a string: QEMU's limits count bytes, JavaScript's lengths count UTF-16 units. */
export const utf8Bytes = (s: string): number => new TextEncoder().encode(s).length;

/** A bitmap name: at most 1023 bytes in UTF-8 (QEMU refuses longer ones). */
export const bitmapName = () =>
  v.pipe(
    name('a bitmap name', MAX_BITMAP_NAME),
    v.check((s) => utf8Bytes(s) <= MAX_BITMAP_NAME, (i) => `expected a bitmap name of at most ${MAX_BITMAP_NAME} bytes in UTF-8 (this one has ${utf8Bytes(String(i.input))})`),
  );

/** A safe integer in min..max (NaN, Infinity, fractions and 2**53 refused). */
export const int = (min: number, max: number) => {
  const msg = `expected an integer in ${min}..${max}`;
  return v.pipe(v.number(msg), v.safeInteger(msg), v.minValue(min, msg), v.maxValue(max, msg));
};

/** How many rows a history channel answers (the stores clamp it to 1..1000). */
export const limit = () => v.optional(int(0, Number.MAX_SAFE_INTEGER));

/** An object with exactly these fields (others are dropped); refused as a whole names its fields. */
export const obj = <const E extends v.ObjectEntries>(entries: E) => v.object(entries, `expected an object with ${Object.keys(entries).join(', ') || 'no fields'}`);

/** An argument the channel may be sent without (null and undefined mean {}). */
export const optionalObj = <const E extends v.ObjectEntries>(entries: E) =>
  v.nullish(
    v.pipe(
      v.custom<unknown>((x) => !Array.isArray(x), `expected an object with ${Object.keys(entries).join(', ')}`),
      obj(entries),
    ),
    {} as v.InferOutput<v.ObjectSchema<E, undefined>>,
  );

/** A channel that takes no argument: whatever is sent is ignored. */
export const noArg = () => v.pipe(v.unknown(), v.transform((): void => undefined));

export type ArgSchema<T> = v.GenericSchema<unknown, T>;

function where(issue: v.BaseIssue<unknown>): string {
  const parts = issue.path ?? [];
  let out = '';
  for (const p of parts) {
    const k = p.key;
    out += typeof k === 'number' ? `[${k}]` : out ? `.${String(k)}` : String(k);
  }
  return out;
}

/** The argument as the handler receives it (validated, normalized), or E_BAD_INPUT naming the field. */
export function parseArg<T>(channel: string, schema: ArgSchema<T>, arg: unknown): T {
  const r = v.safeParse(schema, arg, { abortEarly: true });
  if (r.success) return r.output;
  const issue = r.issues[0];
  // An argument that is not an object at all, for a channel whose argument is a variant: name its tag.
  const at = where(issue) || ('key' in schema && typeof schema.key === 'string' ? schema.key : '');
  // A required field left out is reported by its object, with the object's message: say what it is.
  const message = issue.type === 'object' && issue.path?.length && issue.input === undefined ? 'missing' : issue.message;
  throw new StrataError('E_BAD_INPUT', `${channel}: ${at ? `${at}: ` : ''}${message}`);
}

/** A feature's request channels, name -> [argument, result], the argument taken from its schema. */
export type ChannelsOf<A extends Record<string, v.GenericSchema>, R extends { [K in keyof A]: unknown }> = { [K in keyof A]: [v.InferOutput<A[K]>, R[K]] };
