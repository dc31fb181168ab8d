// What a backup leaves behind when Strata is killed in the middle of it, and the rule for taking it
// away: only what is provably Strata's and abandoned, never a running backup's.
//
// A backup makes, in the repository (REPO) and in Strata's runtime folder (RUN):
//   REPO/.partial-ID.qcow2                 the target under its temporary name (journaled)
//   REPO/ID.qcow2, not yet listed          renamed, the manifest not yet written (journaled)
//   REPO/.strata-backups.json.PID.tmp      the manifest being written
//   REPO/strata-backups.lock               the repository lock (a dead holder's is taken over)
//   RUN/backup-allocation-PID-ID.qcow2     the allocation proof's scratch
//   RUN/qsd-PID-XXXXXX/                    Strata's own storage daemon: its QMP socket, qsd.pid
//   RUN/nbd-PID-XXXXXX/ (or TMP/strata-nbd-PID-XXXXXX/)  a live read's private NBD socket
// and, in a running VM's QEMU: the job strata-backup-PID-…, the nodes strata-bk-PID-ID (target) and
// strata-bk-alloc-PID-ID (scratch), the bitmaps strata-bk-tmp-PID-ID and strata-bk-bridge-PID-ID, and
// the new checkpoint (journaled). PID is the Strata process that made them.
//
// The rules: the repository's temporary files go only while this process holds the repository lock
// (so no other Strata is writing it); a runtime entry or a QEMU object goes only when the Strata
// process its name records is dead (and, for a daemon's folder, no living process names the folder
// in its command line). A process id reused since reads as alive: the entry stays (never the other
// way round).
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { QmpClient } from '../qmp/client.ts';
import { pidAlive, MANIFEST, type Repository } from './repository.ts';

/** The names a backup gives its objects, each carrying the pid of the Strata that made it. */
export function backupNames(pid: number, id: string, runtimeDir: string) {
  return {
    target: `strata-bk-${pid}-${id}`,
    merged: `strata-bk-tmp-${pid}-${id}`,
    bridge: `strata-bk-bridge-${pid}-${id}`,
    allocationNode: `strata-bk-alloc-${pid}-${id}`,
    allocationScratch: path.join(runtimeDir, `backup-allocation-${pid}-${id}.qcow2`),
    job: `strata-backup-${pid}-${Date.now().toString(36)}`,
  };
}

const QEMU_OBJECT = /^strata-(?:bk-(?:(?:tmp|bridge|alloc)-)?|backup-)(\d+)-/;
const RUNTIME_ENTRY = /^(?:backup-allocation|qsd|nbd|strata-nbd)-(\d+)-/;

/** The dead Strata pid a name records, or null (not such a name, or its maker still runs). */
function abandonedBy(name: string, re: RegExp): number | null {
  const m = re.exec(name);
  if (!m) return null;
  const pid = Number(m[1]);
  return pid !== process.pid && !pidAlive(pid) ? pid : null;
}

/** Whether a living process names `dir` in its command line (a daemon started with --pidfile DIR/…). */
function namedByLivingProcess(dir: string): boolean {
  for (const p of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(p)) continue;
    try {
      if (fs.readFileSync(`/proc/${p}/cmdline`, 'utf8').includes(dir + path.sep)) return true;
    } catch {
      // gone meanwhile
    }
  }
  return false;
}

/** Removes the abandoned entries of Strata's runtime folder (and its NBD folders in the system temp dir). */
export function sweepRuntime(runtimeDir: string): string[] {
  const said: string[] = [];
  for (const dir of [runtimeDir, os.tmpdir()]) {
    let names: string[] = [];
    try {
      names = fs.readdirSync(dir);
    } catch {
      continue;
    }
    for (const name of names) {
      if (dir !== runtimeDir && !name.startsWith('strata-nbd-')) continue;
      const pid = abandonedBy(name, RUNTIME_ENTRY);
      if (pid === null) continue;
      const full = path.join(dir, name);
      if (name.startsWith('qsd-') && namedByLivingProcess(full)) continue;
      try {
        fs.rmSync(full, { recursive: true, force: true });
        said.push(`removed ${full} (left by Strata pid ${pid}, which is no longer running)`);
      } catch (e) {
        said.push(`could not remove ${full} (left by Strata pid ${pid}): ${(e as Error).message}`);
      }
    }
  }
  return said;
}

/** Removes a repository's temporary files; the caller holds the repository lock. */
export function sweepRepository(repo: Repository): string[] {
  const said: string[] = [];
  const listed = new Set(repo.manifest.backups.map((b) => b.file));
  for (const name of fs.readdirSync(repo.dir)) {
    const partial = name.startsWith('.partial-') && name.endsWith('.qcow2');
    const manifestTmp = name.startsWith(`.${MANIFEST}.`) && name.endsWith('.tmp') && !name.includes(`.${process.pid}.`);
    if (!partial && !manifestTmp) continue;
    if (listed.has(name)) continue;
    fs.rmSync(path.join(repo.dir, name), { force: true });
    said.push(`removed ${path.join(repo.dir, name)}`);
  }
  return said;
}

async function waitJobGone(qmp: QmpClient, id: string): Promise<void> {
  for (let i = 0; i < 3000; i++) {
    const j = (await qmp.execute<{ id: string; status: string }[]>('query-jobs')).find((x) => x.id === id);
    if (!j) return;
    if (j.status === 'concluded') {
      await qmp.execute('job-dismiss', { id });
      return;
    }
    await new Promise((r) => setTimeout(r, 10));
  }
}

/**
 * Removes from a running VM's QEMU what killed Strata backups left there: their jobs (cancelled,
 * dismissed), then their nodes, then their bitmaps. Failures are said, never thrown (the backup
 * that asks goes on; its own names carry its own pid and cannot clash).
 */
export async function sweepLiveQemu(qmp: QmpClient): Promise<string[]> {
  const said: string[] = [];
  const tryTo = async (what: string, f: () => Promise<unknown>) => {
    try {
      await f();
      said.push(what);
    } catch (e) {
      said.push(`could not ${what.replace(/^removed/, 'remove').replace(/^cancelled/, 'cancel')}: ${(e as Error).message}`);
    }
  };
  const jobs = await qmp.execute<{ id: string; status: string }[]>('query-jobs');
  for (const j of jobs) {
    const pid = abandonedBy(j.id, QEMU_OBJECT);
    if (pid === null) continue;
    await tryTo(`cancelled the backup job ${j.id} of Strata pid ${pid} in ${qmp.path}`, async () => {
      if (j.status !== 'concluded') await qmp.execute('job-cancel', { id: j.id }).catch(() => {});
      await waitJobGone(qmp, j.id);
    });
  }
  const nodes = await qmp.execute<any[]>('query-named-block-nodes', { flat: true });
  for (const n of nodes) {
    const name = String(n['node-name']);
    if (abandonedBy(name, QEMU_OBJECT) !== null) await tryTo(`removed the node ${name} from ${qmp.path}`, () => qmp.execute('blockdev-del', { 'node-name': name }));
  }
  for (const n of nodes) {
    for (const b of (n['dirty-bitmaps'] ?? []) as any[]) {
      if (typeof b.name === 'string' && abandonedBy(b.name, QEMU_OBJECT) !== null) {
        await tryTo(`removed the bitmap ${b.name} from node ${n['node-name']} of ${qmp.path}`, () => qmp.execute('block-dirty-bitmap-remove', { node: n['node-name'], name: b.name }));
      }
    }
  }
  return said;
}
