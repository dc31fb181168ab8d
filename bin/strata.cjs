#!/usr/bin/env node
// The `strata` command. The CLI is bundled to dist/cli.cjs at install time (npm's prepare script),
// so nothing is compiled at run time. CommonJS on purpose: it starts ~10-20 ms faster than ESM.
'use strict';
let cli;
try {
  cli = require('../dist/cli.cjs');
} catch (e) {
  if (e && e.code === 'MODULE_NOT_FOUND' && String(e.message).includes('dist/cli.cjs')) {
    process.stderr.write('strata: dist/cli.cjs is missing; run `npm install` (or `npm run build`) in the Strata folder\n');
    process.exit(1);
  }
  throw e;
}
cli.main(process.argv.slice(2)).then((code) => {
  process.exitCode = code;
});
