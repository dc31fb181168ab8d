// Command-line arguments through Node's util.parseArgs: positionals, --flag, --opt VALUE /
// --opt=VALUE, -h for --help, `--` ends the options; unknown options are refused (E_BAD_INPUT, exit 2).
import { parseArgs as parseNodeArgs, type ParseArgsConfig } from 'node:util';
import { StrataError } from '../errors.ts';

export interface Parsed {
  positionals: string[];
  flags: Set<string>;
  options: Map<string, string>;
}

export function parseArgs(argv: string[], spec: { flags?: string[]; options?: string[] }): Parsed {
  const flagNames = new Set(['help', 'json', ...(spec.flags ?? [])]);
  const optionNames = new Set(spec.options ?? []);
  const config: NonNullable<ParseArgsConfig['options']> = {};
  for (const o of optionNames) config[o] = { type: 'string' };
  for (const f of flagNames) config[f] = { type: 'boolean' };
  config.help = { type: 'boolean', short: 'h' };
  // Not strict: util.parseArgs would refuse an option value that starts with '-' (--limit -5) and
  // word its own errors; each token is judged here instead.
  const { tokens } = parseNodeArgs({ args: argv, options: config, strict: false, allowPositionals: true, tokens: true });
  const parsed: Parsed = { positionals: [], flags: new Set(), options: new Map() };
  let lastShort = -1;
  for (const t of tokens) {
    if (t.kind === 'positional') parsed.positionals.push(t.value);
    if (t.kind !== 'option') continue;
    // As before util.parseArgs: a single-dash word other than -h is a positional (-x, -1, -abc).
    if (!t.rawName.startsWith('--') && argv[t.index] !== '-h') {
      if (lastShort !== t.index) parsed.positionals.push(argv[t.index]);
      lastShort = t.index;
      continue;
    }
    if (flagNames.has(t.name) && !t.inlineValue) parsed.flags.add(t.name);
    else if (optionNames.has(t.name)) {
      if (t.value === undefined) throw new StrataError('E_BAD_INPUT', `option --${t.name} needs a value`);
      parsed.options.set(t.name, t.value);
    } else throw new StrataError('E_BAD_INPUT', `unknown option ${t.rawName}${t.inlineValue ? `=${t.value}` : ''}`);
  }
  return parsed;
}
