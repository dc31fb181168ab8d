// Renders build/icon.svg to the PNGs electron-builder and the window use (run by hand after editing
// the SVG: `node build/render-icons.mjs`). Needs a Chromium: CHROMIUM=/path, else /usr/bin/chromium.
//   build/icons/<n>x<n>.png  Linux icon set (16..512)
//   build/icon.png           1024 px, for macOS (.icns) and Windows (.ico) conversion
//   resources/icon.png       256 px, the window icon
import fs from 'node:fs';
import path from 'node:path';
import { chromium } from 'playwright-core';

const here = import.meta.dirname;
const root = path.resolve(here, '..');
const svg = fs.readFileSync(path.join(here, 'icon.svg'), 'utf8');
const SIZES = [16, 24, 32, 48, 64, 128, 256, 512];

const browser = await chromium.launch({ executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium', args: ['--no-sandbox'] });
try {
  const page = await browser.newPage();
  const shot = async (size, file) => {
    await page.setViewportSize({ width: size, height: size });
    const body = svg.replace('width="1024" height="1024"', `width="${size}" height="${size}"`);
    await page.setContent(`<!doctype html><html><head><style>html,body{margin:0;background:transparent}svg{display:block}</style></head><body>${body}</body></html>`);
    fs.mkdirSync(path.dirname(file), { recursive: true });
    await page.screenshot({ path: file, omitBackground: true, clip: { x: 0, y: 0, width: size, height: size } });
    console.log(path.relative(root, file));
  };
  for (const n of SIZES) await shot(n, path.join(here, 'icons', `${n}x${n}.png`));
  await shot(1024, path.join(here, 'icon.png'));
  await shot(256, path.join(root, 'resources', 'icon.png'));
} finally {
  await browser.close();
}
