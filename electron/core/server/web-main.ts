// `npm run web` / the fallback of `npm start`: the core plus the browser-mode server.
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { createService } from '../service.ts';
import { defaultDataDir } from '../paths.ts';
import { startBrowserServer } from './browser-server.ts';

async function main(): Promise<void> {
  const here = path.dirname(fileURLToPath(import.meta.url));
  // Bundled as dist/web.mjs next to dist/renderer; STRATA_RENDERER_DIR overrides for development.
  const staticDir = process.env.STRATA_RENDERER_DIR ?? path.join(here, 'renderer');
  const portArg = process.argv.indexOf('--port');
  const port = portArg > 0 ? Number(process.argv[portArg + 1]) : Number(process.env.STRATA_PORT ?? 0);
  const dataDir = defaultDataDir();
  const service = createService({ dataDir, mode: 'browser' });
  const server = await startBrowserServer({ service, staticDir, port });
  console.log(`Strata (browser mode) is running at ${server.url}`);
  console.log(`data: ${dataDir}   (Ctrl+C to stop; the page is reachable from this machine only and needs the token in the URL)`);
  const stop = async () => {
    await server.close();
    await service.close();
    process.exit(0);
  };
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
}

main().catch((e) => {
  console.error(`strata: ${(e as Error).message}`);
  process.exit(1);
});
