// Runs every test/**/*.test.ts with Node's own test runner (Node 20 has no glob support for --test).
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';

const root = path.resolve(import.meta.dirname, '..');
const only = process.argv.slice(2);
function walk(dir) {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((d) => {
    const p = path.join(dir, d.name);
    if (d.isDirectory()) return d.name === 'bench' ? [] : walk(p);
    return d.name.endsWith('.test.ts') ? [p] : [];
  });
}
let files = walk(path.join(root, 'test')).sort();
if (only.length) files = files.filter((f) => only.some((o) => f.includes(o)));
if (files.length === 0) {
  console.error('no test files found');
  process.exit(1);
}
// A test that leaks a child process or a socket would keep its file alive for ever: end every
// test after 3 minutes, and the whole run after 20, saying so.
const WHOLE_RUN_MS = 20 * 60 * 1000;
const r = spawnSync(process.execPath, ['--import', 'tsx', '--test', '--test-concurrency=2', '--test-timeout=180000', '--test-force-exit', ...files], {
  stdio: 'inherit',
  cwd: root,
  timeout: WHOLE_RUN_MS,
  killSignal: 'SIGKILL',
});
if (r.error && r.signal === 'SIGKILL') console.error(`tests: the run did not finish within ${WHOLE_RUN_MS / 60000} minutes and was stopped`);
process.exit(r.status ?? 1);
