// Built by scripts/build.mjs as `vite build --config renderer/vite.config.ts` from the repo root.
// base './' because Electron loads the bundle from file://; browser mode serves the same files.
import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vite';
import vue from '@vitejs/plugin-vue';

const here = fileURLToPath(new URL('.', import.meta.url));

export default defineConfig({
  root: here,
  base: './',
  plugins: [vue()],
  build: {
    outDir: '../dist/renderer',
    emptyOutDir: true,
    target: 'chrome120',
    // One CSS file and no inlined assets keeps the strict CSP (style-src 'self') satisfied.
    cssCodeSplit: false,
    assetsInlineLimit: 0,
    sourcemap: true,
    // The Electron file:// page cannot use modulepreload links to other origins anyway; keep output plain.
    modulePreload: { polyfill: false },
  },
  server: { host: '127.0.0.1', strictPort: false },
});
