// The guard around query-named-block-nodes: QEMU 7.2's storage daemon dies (SIGSEGV) when asked for
// its block nodes while a finished block-stream waits to be dismissed. Strata refuses instead.
import { test } from 'vitest';
import assert from 'node:assert/strict';
import path from 'node:path';
import { QmpClient } from '../../electron/core/qmp/client.ts';
import { queryNamedNodes } from '../../electron/core/qmp/named-nodes.ts';
import { blockGraph } from '../../electron/core/connections/block-graph.ts';
import { tempDir, qemuImg, qemuIo } from '../helpers/qemu.ts';
import { startDaemon } from '../helpers/storage-daemon.ts';

test('a finished, undismissed stream: refused with E_BUSY, the daemon lives; after dismiss it answers', { timeout: 60000 }, async (t) => {
  const dir = tempDir(t);
  const base = path.join(dir, 'b.qcow2');
  const top = path.join(dir, 't.qcow2');
  qemuImg('create', '-q', '-f', 'qcow2', base, '16M');
  qemuIo(base, ['write 0 1M']);
  qemuImg('create', '-q', '-f', 'qcow2', '-b', base, '-F', 'qcow2', top);
  const d = await startDaemon(t, dir, ['--blockdev', `driver=qcow2,node-name=top,file.driver=file,file.filename=${top}`]);
  const q = await QmpClient.connect(d.socket);
  t.onTestFinished(() => q.close());
  assert.ok((await queryNamedNodes(q)).length > 0, 'answers before any job');
  const concluded = q.waitEvent((e) => e.event === 'JOB_STATUS_CHANGE' && e.data?.status === 'concluded');
  await q.execute('block-stream', { 'job-id': 's1', device: 'top', 'auto-dismiss': false });
  await concluded;
  await assert.rejects(queryNamedNodes(q), (e: any) => e.code === 'E_BUSY' && /'s1' has finished \(concluded\).*dismiss the job first/.test(e.message));
  await assert.rejects(blockGraph(q), (e: any) => e.code === 'E_BUSY');
  assert.equal(d.child.exitCode, null, 'the daemon is still running');
  await q.execute('job-dismiss', { id: 's1' });
  const nodes = await queryNamedNodes(q);
  assert.ok(nodes.some((n) => n['node-name'] === 'top'));
  assert.equal(d.child.exitCode, null);
});
