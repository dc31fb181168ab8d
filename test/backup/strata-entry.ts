// Runs the strata CLI from source (tests only): `node --import tsx test/backup/strata-entry.ts ARGS`.
import { main } from '../../electron/core/cli/main.ts';

main(process.argv.slice(2)).then((code) => {
  process.exitCode = code;
});
