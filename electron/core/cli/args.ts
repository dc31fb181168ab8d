// A small argument parser: positionals, --flag, --opt VALUE / --opt=VALUE; unknown options refused.
import { StrataError } from '../errors.ts';

export interface Parsed {
  positionals: string[];
  flags: Set<string>;
  options: Map<string, string>;
}

export function parseArgs(argv: string[], spec: { flags?: string[]; options?: string[] }): Parsed {
  const flags = new Set<string>();
  const options = new Map<string, string>();
  const positionals: string[] = [];
  const knownFlags = new Set(['help', 'json', ...(spec.flags ?? [])]);
  const knownOptions = new Set(spec.options ?? []);
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--') {
      positionals.push(...argv.slice(i + 1));
      break;
    }
    if (a === '-h') {
      flags.add('help');
      continue;
    }
    if (a.startsWith('--')) {
      const eq = a.indexOf('=');
      const name = a.slice(2, eq < 0 ? undefined : eq);
      if (knownFlags.has(name) && eq < 0) flags.add(name);
      else if (knownOptions.has(name)) {
        const v = eq >= 0 ? a.slice(eq + 1) : argv[++i];
        if (v === undefined) throw new StrataError('E_BAD_INPUT', `option --${name} needs a value`);
        options.set(name, v);
      } else throw new StrataError('E_BAD_INPUT', `unknown option ${a}`);
      continue;
    }
    positionals.push(a);
  }
  return { positionals, flags, options };
}
