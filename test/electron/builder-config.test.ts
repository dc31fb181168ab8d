// build/electron-builder.yml passes electron-builder's own loader and schema validation (packaging
// itself is not run here: it downloads Electron), and the icons are real PNGs of the right sizes.
import { test } from 'vitest';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';

const root = path.resolve(import.meta.dirname, '../..');
const require = createRequire(import.meta.url);

interface Cfg {
  appId: string;
  productName: string;
  files: ({ filter: string[] } | string)[];
  asarUnpack: string[];
  linux: { target: string[]; category: string; icon: string; desktop: { entry: Record<string, string> } };
  mac: { target: string; icon: string };
  win: { target: string; icon: string };
}

type Filter = (file: string, stat: { isDirectory(): boolean }) => boolean;
interface FileMatcherCtor {
  new (from: string, to: string, expand: (s: string) => string, patterns: string[]): { createFilter(): Filter };
}

async function loadConfig(): Promise<Cfg> {
  const { getConfig, validateConfiguration } = require('app-builder-lib/out/util/config/config.js') as {
    getConfig(dir: string, file: string, extra: null): Promise<Cfg>;
    validateConfiguration(c: Cfg, logger: unknown): Promise<void>;
  };
  const { DebugLogger } = require('builder-util') as { DebugLogger: new (enabled: boolean) => unknown };
  const c = await getConfig(root, 'build/electron-builder.yml', null);
  await validateConfiguration(c, new DebugLogger(false));
  return c;
}

function patterns(c: Cfg): string[] {
  return c.files.flatMap((f) => (typeof f === 'string' ? [f] : f.filter));
}

const fileStat = { isDirectory: () => false };

test('electron-builder accepts the configuration (its own loader and schema)', async () => {
  const c = await loadConfig();
  assert.equal(c.appId, 'dev.strata.app');
  assert.equal(c.productName, 'Strata');
  const files = patterns(c);
  assert.ok(files.includes('dist/**'));
  assert.ok(files.includes('package.json'));
  assert.ok(files.includes('resources/icon.png'));
  assert.ok(c.asarUnpack.some((p) => p.includes('better-sqlite3') && p.endsWith('.node')));
  assert.deepEqual(c.linux.target, ['AppImage', 'deb']);
  assert.equal(c.linux.category, 'Utility');
  assert.match(c.linux.desktop.entry.Categories, /Utility;System;/);
  assert.equal(c.mac.target, 'dmg');
  assert.equal(c.win.target, 'nsis');
  for (const icon of [c.linux.icon, c.mac.icon, c.win.icon]) assert.ok(fs.existsSync(path.join(root, icon)), icon);
  // the app's entry is what the build produces
  const pkg = JSON.parse(fs.readFileSync(path.join(root, 'package.json'), 'utf8'));
  assert.equal(pkg.main, 'dist/electron/main.cjs');
});

test("packaged files: the built app, not its sources or maps, and no second Electron from node_modules", async () => {
  const c = await loadConfig();
  const { FileMatcher, getNodeModuleFileMatcher } = require('app-builder-lib/out/fileMatcher.js') as {
    FileMatcher: FileMatcherCtor;
    getNodeModuleFileMatcher(appDir: string, dest: string, expand: (s: string) => string, platformOptions: object, packager: object): { createFilter(): Filter };
  };
  const app = new FileMatcher(root, '/out', (s) => s, patterns(c)).createFilter();
  const inApp = (rel: string) => app(path.join(root, rel), fileStat);
  for (const f of ['package.json', 'dist/electron/main.cjs', 'dist/electron/preload.cjs', 'dist/renderer/index.html', 'dist/renderer/assets/index-abc.js', 'resources/icon.png']) {
    assert.equal(inApp(f), true, `${f} is packaged`);
  }
  for (const f of ['dist/electron/main.cjs.map', 'electron/main.ts', 'renderer/src/main.ts', 'test/electron/app.test.ts', 'scripts/start.mjs', 'build/icon.svg']) {
    assert.equal(inApp(f), false, `${f} is not packaged`);
  }
  const deps = getNodeModuleFileMatcher(root, '/out', (s) => s, {}, { config: c, debugLogger: { isEnabled: false } }).createFilter();
  const inDeps = (rel: string) => deps(path.join(root, rel), fileStat);
  assert.equal(inDeps('node_modules/better-sqlite3/lib/index.js'), true);
  assert.equal(inDeps('node_modules/better-sqlite3/build/Release/better_sqlite3.node'), true);
  assert.equal(inDeps('node_modules/electron/dist/electron'), false);
  assert.equal(inDeps('node_modules/electron/package.json'), false);
  assert.equal(inDeps('node_modules/electron-to-chromium/index.js'), true, 'only the electron package itself is dropped');
});

function pngInfo(file: string): { width: number; height: number; colorType: number } {
  const b = fs.readFileSync(file);
  assert.equal(b.subarray(0, 8).toString('hex'), '89504e470d0a1a0a', `${file} is a PNG`);
  assert.equal(b.subarray(12, 16).toString('latin1'), 'IHDR');
  return { width: b.readUInt32BE(16), height: b.readUInt32BE(20), colorType: b[25] };
}

test('icons: the Linux set 16..512, 1024 for macOS/Windows, 256 for the window; square RGBA', () => {
  const expect: [string, number][] = [
    ...[16, 24, 32, 48, 64, 128, 256, 512].map((n): [string, number] => [`build/icons/${n}x${n}.png`, n]),
    ['build/icon.png', 1024],
    ['resources/icon.png', 256],
  ];
  for (const [file, n] of expect) {
    const info = pngInfo(path.join(root, file));
    assert.deepEqual(info, { width: n, height: n, colorType: 6 }, file);
  }
  assert.match(fs.readFileSync(path.join(root, 'build', 'icon.svg'), 'utf8'), /<svg[^>]*viewBox="0 0 1024 1024"/);
});
