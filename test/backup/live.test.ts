// Backing up a running QEMU (a qemu-storage-daemon standing in for the VM, written over NBD), and
// the freeze path against a fake guest agent (never a real qemu-ga).
import { test, onTestFinished } from 'vitest';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { run, waitListening } from '../helpers/qemu.ts';
import { QmpClient } from '../../electron/core/qmp/client.ts';
import { restoreBackup } from '../../electron/core/backup/restore.ts';
import { tmp, makeDisk, sameDisk, strata } from './helpers.ts';

async function startVm(dir: string, disk: string) {
  const sock = path.join(dir, 'vm.qmp');
  const nbd = path.join(dir, 'vm.nbd');
  const child = spawn('qemu-storage-daemon', [
    '--chardev', `socket,id=m,path=${sock},server=on,wait=off`, '--monitor', 'chardev=m',
    '--blockdev', `driver=qcow2,node-name=vm,file.driver=file,file.filename=${disk}`,
    '--nbd-server', `addr.type=unix,addr.path=${nbd}`,
    '--export', 'type=nbd,id=e,node-name=vm,name=vm,writable=on',
  ], { stdio: 'ignore' });
  onTestFinished(async () => {
    if (child.exitCode === null) {
      child.kill('SIGTERM');
      await new Promise((r) => child.once('exit', r));
    }
  });
  // listening, not just bound: a socket file exists a moment before QEMU listens on it
  for (const s of [sock, nbd]) await waitListening(s, child, () => 'qemu-storage-daemon (its stderr is not kept)');
  const uri = `nbd+unix:///vm?socket=${nbd}`;
  return {
    sock,
    write: (...cmds: string[]) => run('qemu-io', ['-f', 'raw', ...cmds.flatMap((c) => ['-c', c]), uri]),
    truth: (name: string) => {
      const to = path.join(dir, `truth-${name}.raw`);
      run('qemu-img', ['convert', '-f', 'raw', '-O', 'raw', uri, to]);
      return to;
    },
    bitmaps: async () => {
      const q = await QmpClient.connect(sock);
      try {
        const nodes = await q.execute<any[]>('query-named-block-nodes', { flat: true });
        return (nodes.find((n) => n['node-name'] === 'vm')['dirty-bitmaps'] ?? []).map((b: any) => `${b.name}:${b.recording ? 'rec' : 'off'}:${b.persistent ? 'p' : 't'}`).sort();
      } finally {
        await q.close();
      }
    },
  };
}

/** A fake guest agent: answers guest-sync, freeze and thaw, and records what it was asked. */
function fakeAgent(dir: string): { path: string; calls: string[] } {
  const p = path.join(dir, 'qga.sock');
  const calls: string[] = [];
  const server = net.createServer((c) => {
    let buf = '';
    c.on('data', (d) => {
      buf += d;
      let i;
      while ((i = buf.indexOf('\n')) >= 0) {
        const cmd = JSON.parse(buf.slice(0, i));
        buf = buf.slice(i + 1);
        calls.push(cmd.execute);
        c.write(JSON.stringify({ return: cmd.execute === 'guest-sync' ? cmd.arguments.id : 1 }) + '\n');
      }
    });
  });
  server.listen(p);
  onTestFinished(() => new Promise<void>((r) => server.close(() => r())));
  return { path: p, calls };
}

test('a running QEMU: full then inc through its QMP socket, crash-consistent, restored exactly; frozen with a guest agent', async () => {
  const dir = tmp();
  const home = path.join(dir, 'home');
  const repo = path.join(dir, 'repo');
  const disk = makeDisk(dir);
  const vm = await startVm(dir, disk);
  vm.write('write -P 0x11 0 2M');
  let r = await strata(home, ['backup', '--socket', vm.sock, '--node', 'vm', '--repo', repo, '--json']);
  assert.equal(r.code, 0, r.err);
  const full = JSON.parse(r.out);
  assert.equal(full.level, 'full');
  const t1 = vm.truth('full');
  assert.deepEqual(await vm.bitmaps(), [`${full.checkpoint}:rec:p`], 'the checkpoint lives in the VM, recording, persistent');

  vm.write('write -P 0x22 1M 64k', 'write -P 0x23 5M 128k');
  const agent = fakeAgent(dir);
  r = await strata(home, ['backup', '--socket', vm.sock, '--node', 'vm', '--qga', agent.path, '--repo', repo, '--json']);
  assert.equal(r.code, 0, r.err);
  const inc = JSON.parse(r.out);
  assert.equal(inc.level, 'inc');
  assert.equal(inc.since, full.checkpoint);
  assert.equal(inc.dirtyBytes, 192 << 10);
  assert.deepEqual(agent.calls, ['guest-sync', 'guest-fsfreeze-freeze', 'guest-fsfreeze-thaw']);
  const t2 = vm.truth('inc');

  r = await strata(home, ['backups', '--repo', repo, '--json']);
  assert.deepEqual(JSON.parse(r.out).map((b: any) => [b.id, b.consistency]), [['full-1', 'crash'], ['inc-2', 'frozen']]);
  for (const [id, truth] of [['full-1', t1], ['inc-2', t2]]) {
    const to = path.join(dir, `${id}.raw`);
    await restoreBackup({ repo, id, to, format: 'raw', force: false });
    assert.ok(sameDisk(to, truth), `${id} restores the disk as it was`);
  }

  // A guest agent that fails the freeze: nothing is listed, nothing added to the VM.
  const before = await vm.bitmaps();
  r = await strata(home, ['backup', '--socket', vm.sock, '--node', 'vm', '--qga', path.join(dir, 'no-agent.sock'), '--repo', repo]);
  assert.equal(r.code, 2);
  assert.match(r.err, /no-agent\.sock: cannot reach the guest agent/);
  assert.deepEqual(await vm.bitmaps(), before);
  assert.deepEqual(fs.readdirSync(repo).filter((n) => n.startsWith('.')), []);
}, 60000);
