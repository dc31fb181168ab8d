// The CLI's argument parser (util.parseArgs underneath): the behaviour every strata command relies on.
import { test } from 'vitest';
import assert from 'node:assert/strict';
import { parseArgs } from '../../electron/core/cli/args.ts';

const spec = { flags: ['verbose'], options: ['limit'] };
const parse = (argv: string[]) => {
  const p = parseArgs(argv, spec);
  return { positionals: p.positionals, flags: [...p.flags].sort(), options: Object.fromEntries(p.options) };
};
const refused = (argv: string[], message: string) =>
  assert.throws(() => parseArgs(argv, spec), (e: any) => e.code === 'E_BAD_INPUT' && e.message === message);

test('positionals, flags, and options as --opt VALUE or --opt=VALUE', () => {
  assert.deepEqual(parse(['a', '--limit', '5', 'b', '--verbose', '--json']), { positionals: ['a', 'b'], flags: ['json', 'verbose'], options: { limit: '5' } });
  assert.deepEqual(parse(['--limit=7']).options, { limit: '7' });
  assert.deepEqual(parse(['--limit=']).options, { limit: '' });
  assert.deepEqual(parse(['--limit', '-5']).options, { limit: '-5' });
});

test('-h and --help are help; -- ends the options; other single-dash words are positionals', () => {
  assert.deepEqual(parse(['-h']).flags, ['help']);
  assert.deepEqual(parse(['--help']).flags, ['help']);
  assert.deepEqual(parse(['--', '--nope', '-h']), { positionals: ['--nope', '-h'], flags: [], options: {} });
  assert.deepEqual(parse(['-x', '-', '-ab', '-hx']).positionals, ['-x', '-', '-ab', '-hx']);
});

test('unknown options, a flag given a value, and an option without one are refused, naming the option', () => {
  refused(['--nope'], 'unknown option --nope');
  refused(['--nope=3'], 'unknown option --nope=3');
  refused(['--json=1'], 'unknown option --json=1');
  refused(['a', '--limit'], 'option --limit needs a value');
});
