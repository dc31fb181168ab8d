// The test suite on vitest. Three groups, runnable alone (`npx vitest run --project qemu`, or a path:
// `npm test -- test/qemu`):
//   unit  plain Node: the core's pure parts and the Electron layer against a fake electron
//   qemu  tests that spawn the real QEMU tools (qemu-img, qemu-io, qemu-nbd, qemu-storage-daemon)
//   e2e   the UI in headless Chromium against browser mode
// Every file runs in its own forked process (children such as qemu-storage-daemon, qemu-nbd and
// Chromium are started from plain Node), at most two at once: the CI machine has two cores.
import { defineConfig } from 'vitest/config';

const unit = [
  'test/electron/**/*.test.ts',
  'test/core/extents.test.ts',
  'test/nbd/parser.test.ts',
  'test/qmp/protocol.test.ts',
  'test/plans/decide-commit.test.ts',
  'test/jobs/progress.test.ts',
  'test/repair/findings.test.ts',
  'test/renderer/viewport.test.ts',
  'test/core/qmp-traffic.test.ts',
  'test/renderer/backup-timeline.test.ts',
  'test/renderer/backups-store.test.ts',
];
const e2e = ['test/e2e/**/*.test.ts'];

export default defineConfig({
  test: {
    pool: 'forks',
    isolate: true,
    maxWorkers: 2,
    minWorkers: 1,
    // A test that leaks a child process or a socket would otherwise hang its file.
    testTimeout: 180_000,
    hookTimeout: 180_000,
    teardownTimeout: 30_000,
    exclude: ['test/bench/**', '**/node_modules/**'],
    setupFiles: ['test/helpers/yield-between-tests.ts'],
    reporters: ['default', 'json'],
    outputFile: { json: 'test-output/vitest.json' },
    coverage: {
      provider: 'v8',
      include: ['electron/core/**'],
      reporter: ['text-summary', 'text', 'json-summary', 'html'],
      reportsDirectory: 'test-output/coverage',
      // the figure is reported even when a test fails (the failure still fails the run)
      reportOnFailure: true,
    },
    projects: [
      { extends: true, test: { name: 'unit', include: unit } },
      { extends: true, test: { name: 'qemu', include: ['test/**/*.test.ts'], exclude: [...unit, ...e2e, 'test/bench/**'] } },
      { extends: true, test: { name: 'e2e', include: e2e } },
    ],
  },
});
