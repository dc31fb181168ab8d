// npx only looks in node_modules/.bin, where npm never links the project's own bin. Link it there at
// install time so `npx strata` works from the repository right after `npm install`.
import fs from 'node:fs';
import path from 'node:path';

const root = path.resolve(import.meta.dirname, '..');
const binDir = path.join(root, 'node_modules', '.bin');
const target = path.join(root, 'bin', 'strata.cjs');
fs.mkdirSync(binDir, { recursive: true });
const link = path.join(binDir, 'strata');
fs.rmSync(link, { force: true });
fs.symlinkSync(path.relative(binDir, target), link);
fs.chmodSync(target, 0o755);
