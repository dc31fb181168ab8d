#!/usr/bin/env node
// The `strata` command. The CLI is bundled to dist/cli.mjs at install time (npm's prepare script),
// so nothing is compiled at run time.
let cli;
try {
  cli = await import('../dist/cli.mjs');
} catch (e) {
  if (e?.code === 'ERR_MODULE_NOT_FOUND') {
    process.stderr.write('strata: dist/cli.mjs is missing; run `npm install` (or `npm run build`) in the Strata folder\n');
    process.exit(1);
  }
  throw e;
}
process.exitCode = cli.main(process.argv.slice(2));
