// strata backup / backups / restore / verify: the backup capability's command-line face. `backup`
// is itself the user's request (no --yes); --dry-run prints what it would do and writes nothing.
import path from 'node:path';
import { parseArgs } from './args.ts';
import { humanBytes, table } from './format.ts';
import type { Out } from './output.ts';
import { defaultDataDir } from '../paths.ts';
import { StrataError } from '../errors.ts';
import { isLevel, keepsSomething, type Level } from '../backup/rules.ts';
import { Repository, listPoints, MANIFEST } from '../backup/repository.ts';
import type { JobView } from '../jobs/engine.ts';
import { openDb, type Db } from '../store/db.ts';
import fs from 'node:fs';
import { BackupActivityLog, journaledPrune, recordedRestore, recoverPrunes, verifyEnd } from '../backup/activity.ts';

/** Runs `fn` with Strata's history database, where restores, verifies and prunes are recorded for the app's History. */
async function withHistory<T>(fn: (db: Db) => Promise<T> | T): Promise<T> {
  const db = openDb(path.join(defaultDataDir(), 'strata.db'));
  try {
    return await fn(db);
  } finally {
    db.close();
  }
}

/**
 * Prunes of `repo` a killed Strata left unfinished, finished or rolled back from the history
 * database's journal (none when there is no database yet: nothing was journaled). Said on stderr.
 */
function recoverLeftPrunes(repo: string): string[] {
  const file = path.join(defaultDataDir(), 'strata.db');
  if (!fs.existsSync(file)) return [];
  const db = openDb(file);
  try {
    const notes = recoverPrunes(db, repo).map((r) => r.note);
    for (const n of notes) process.stderr.write(`strata: ${n}\n`);
    return notes;
  } finally {
    db.close();
  }
}

/** What interrupted backups of `repo` left behind, removed where that writes no disk (take.ts). Said on stderr. */
async function tidyLeftBackups(repo: string): Promise<void> {
  if (!fs.existsSync(path.join(repo, MANIFEST))) return;
  const { tidyInterruptedBackups } = await import('../backup/take.ts');
  const file = path.join(defaultDataDir(), 'strata.db');
  const db = fs.existsSync(file) ? openDb(file) : null;
  try {
    for (const n of await tidyInterruptedBackups(db, repo, path.join(defaultDataDir(), 'run'))) process.stderr.write(`strata: ${n}\n`);
  } finally {
    db?.close();
  }
}

export const BACKUP_HELP = {
  backup: `Usage: strata backup IMAGE --repo DIR [--level full|inc|diff|copy] [--since NAME] [--compress] [--dry-run] [--json]
       strata backup --socket PATH --node NODE [--qga PATH] --repo DIR [...]

Backs up the disk IMAGE (its whole backing chain, as the guest sees it) into the repository DIR
(a folder, one per disk; created when missing or empty). QEMU copies the data: IMAGE is opened in
Strata's own qemu-storage-daemon, and the new checkpoint bitmap is added to IMAGE in the same
transaction that starts the copy.

  --level full   everything, and a new checkpoint
  --level inc    the changes since the previous backup's checkpoint (default when there is one)
  --level diff   the changes since the last full backup's checkpoint, or since --since NAME
  --level copy   everything, no checkpoint (outside the chain of backups)
  --compress     compressed qcow2 clusters in the backup file
  --dry-run      print the level, the checkpoint it starts from and the bytes to copy; write nothing

--socket PATH --node NODE backs up a running QEMU's disk (NODE: its top node) through that QEMU;
the backup is crash-consistent, or, with --qga PATH (the guest agent's socket), taken with the
guest's filesystems frozen around the transaction (always thawed again).

When the checkpoint's bitmaps cannot say what changed because a layer made outside Strata (qemu-img
create -b) sits above the layers holding it, the changes are proven from allocation instead: that
layer was created after the checkpoint, so everything allocated in it was written since; the backup
stays inc/diff ("changesFrom": "allocation") and IMAGE's bitmaps are not changed. When the changes
cannot be known at all (an in-use bitmap, a checkpoint disabled in a backing layer, ...), inc and diff
fall back to full and say why ("fallback"). A backup that does not
complete is never listed: its partial file and its checkpoint bitmap are removed (after a crash, at
the next strata backup on the repository). Ctrl-C cancels.
--json: {"id","level","requested","fallback","checkpoint","since","file","bytes","dirtyBytes","seconds","changesFrom"}
(changesFrom: "bitmaps" | "allocation" for an inc or diff, null for a full or copy); with --dry-run
also "dryRun": true and "copies": where the data QEMU will copy is, as inspector sources whose union it
is ([{"kind":"bitmap","layer","name"} | {"kind":"allocation","layer"}], null for a running VM)`,
  backups: `Usage: strata backups --repo DIR [--json]

Lists the backups of repository DIR, oldest first.
--json: [{"id","level","parent","checkpoint","createdAt","file","bytes","state","consistency"}]`,
  restore: `Usage: strata restore --repo DIR ID --to PATH [--format qcow2|raw] [--force] [--checkpoint] [--json]

Restores backup ID to a new standalone image PATH (default format qcow2), thin: unallocated and
zero areas stay so. An existing PATH is only overwritten with --force.

  --checkpoint   give PATH a fresh checkpoint: a recording bitmap named as ID's own checkpoint, and
                 record in the repository that PATH holds it at ID, so the next strata backup PATH
                 --repo DIR is incremental to ID (qcow2 only; not for a copy, which has no checkpoint)
--json: {"id","to","bytes","checkpoint"} (bytes: space the restored file takes on disk; checkpoint: the
bitmap PATH holds, or null)`,
  prune: `Usage: strata prune --repo DIR [--keep-last N] [--keep-daily N] [--keep-weekly N] [--yes] [--json]

Removes the backups the policy does not keep: --keep-last N newest, the newest of each of the N newest
days (--keep-daily) and weeks (--keep-weekly). Every remaining backup stays restorable: an inc or diff
a kept one is restored through is merged into its successor (qemu-img rebase, on a copy swapped in
whole), the full below is kept. Without --yes the plan is printed and nothing is removed. Journaled:
a prune a killed Strata left unfinished is finished or rolled back by the next strata prune or
strata backups. Checkpoint bitmaps of removed backups stay in the disk.
--json: {"applied","keep":[{"id","why"}],"remove":[{"id","file","bytes","mergedInto"}],
"merge":[{"into","from","parent","file","grownBytes"}],"orphans":[ABS],"freedBytes","recovered":[S]}`,
  verify: `Usage: strata verify --repo DIR [ID] [--json]

Checks every backup (or only ID): qemu-img check of its file, its backing link (present, relative,
naming its parent), and the sha256 digests of the data it wrote, recorded at backup time. Exit 0
when everything checks, else 2 naming each damaged backup and file.
--json: [{"id","file","ok","problems":[S],"checkedBytes"}]`,
};

function repoOption(a: ReturnType<typeof parseArgs>, cmd: string): string {
  const r = a.options.get('repo');
  if (!r) throw new StrataError('E_BAD_INPUT', `strata ${cmd} needs --repo DIR; see strata ${cmd} --help`);
  return path.resolve(r);
}

function progressDrawer(): ((j: JobView) => void) | undefined {
  if (!process.stderr.isTTY) return undefined;
  let last = 0;
  return (j) => {
    const now = Date.now();
    if (now - last < 200 && j.state === 'running') return;
    last = now;
    const pct = j.total > 0 ? Math.floor((j.current / j.total) * 100) : 0;
    const rate = j.rate ? `${humanBytes(Math.round(j.rate))}/s` : '';
    const eta = j.etaSeconds !== null && j.etaSeconds !== undefined ? `${Math.ceil(j.etaSeconds)} s left` : '';
    process.stderr.write(`\r\x1b[K${pct}% ${humanBytes(j.current)} of ${humanBytes(j.total)} ${rate} ${eta}`);
  };
}

export async function cmdBackup(argv: string[], out: Out): Promise<void> {
  const a = parseArgs(argv, { flags: ['compress', 'dry-run'], options: ['repo', 'level', 'since', 'socket', 'node', 'qga'] });
  if (a.flags.has('help')) return out.write(BACKUP_HELP.backup + '\n');
  const socket = a.options.get('socket');
  const node = a.options.get('node');
  if (socket) {
    if (a.positionals.length) throw new StrataError('E_BAD_INPUT', 'with --socket, name the disk with --node NODE, not an image path');
    if (!node) throw new StrataError('E_BAD_INPUT', '--socket needs --node NODE (the top node of the disk; see query-named-block-nodes)');
  } else {
    if (node || a.options.has('qga')) throw new StrataError('E_BAD_INPUT', '--node and --qga need --socket PATH (a running QEMU)');
    if (a.positionals.length !== 1) throw new StrataError('E_BAD_INPUT', 'wrong arguments; see strata backup --help');
  }
  const repo = repoOption(a, 'backup');
  const lv = a.options.get('level') ?? null;
  if (lv !== null && !isLevel(lv)) throw new StrataError('E_BAD_INPUT', `--level ${lv}: expected full, inc, diff or copy`);
  const json = a.flags.has('json');
  const { takeBackup, takenDoc } = await import('../backup/take.ts');
  const ctl = new AbortController();
  const onSigint = () => ctl.abort();
  process.on('SIGINT', onSigint);
  process.on('SIGTERM', onSigint);
  const draw = progressDrawer();
  try {
    const r = await takeBackup({
      image: socket ? undefined : a.positionals[0],
      live: socket ? { socket, node: node!, qga: a.options.get('qga') } : undefined,
      repo,
      level: lv as Level | null,
      since: a.options.get('since') ?? null,
      compress: a.flags.has('compress'),
      dryRun: a.flags.has('dry-run'),
      dataDir: defaultDataDir(),
      signal: ctl.signal,
      onProgress: draw,
      onNote: (s) => process.stderr.write(`${draw ? '\r\x1b[K' : ''}strata: ${s}\n`),
    });
    if (draw) process.stderr.write('\r\x1b[K');
    if (json) return out.write(JSON.stringify(takenDoc(r), null, 2) + '\n');
    if (r.dryRun) {
      out.write(`Would take backup ${r.id}: ${r.level}${r.since ? ` since checkpoint ${r.since}` : ''}, copying ${humanBytes(r.dirtyBytes)} into ${r.file}\n`);
      if (r.changesFrom === 'allocation') out.write('  changes found from allocation (a layer made outside Strata after the checkpoint)\n');
      if (r.fallback) out.write(`  full because: ${r.fallback}\n`);
      return out.write('Nothing was written.\n');
    }
    out.write(`Backup ${r.id} (${r.level}${r.since ? ` since ${r.since}` : ''}) done in ${r.seconds} s: ${r.file}, ${humanBytes(r.bytes)} (${humanBytes(r.dirtyBytes)} of disk data)\n`);
    if (r.changesFrom === 'allocation') out.write('  changes found from allocation (a layer made outside Strata after the checkpoint)\n');
    if (r.fallback) out.write(`  full because: ${r.fallback}\n`);
    if (r.checkpoint) out.write(`  new checkpoint: ${r.checkpoint}\n`);
  } finally {
    process.off('SIGINT', onSigint);
    process.off('SIGTERM', onSigint);
  }
}

export async function cmdBackups(argv: string[], out: Out): Promise<void> {
  const a = parseArgs(argv, { options: ['repo'] });
  if (a.flags.has('help')) return out.write(BACKUP_HELP.backups + '\n');
  if (a.positionals.length) throw new StrataError('E_BAD_INPUT', 'wrong arguments; see strata backups --help');
  recoverLeftPrunes(repoOption(a, 'backups'));
  await tidyLeftBackups(repoOption(a, 'backups'));
  const repo = Repository.open(repoOption(a, 'backups'));
  const list = listPoints(repo);
  if (a.flags.has('json')) return out.write(JSON.stringify(list, null, 2) + '\n');
  if (!list.length) return out.write(`${repo.dir}: no backups yet\n`);
  out.write(table(['id', 'level', 'parent', 'created', 'size', 'state', 'checkpoint'], list.map((b) => [b.id, b.level, b.parent ?? '-', b.createdAt, humanBytes(b.bytes), b.state, b.checkpoint ?? '-'])) + '\n');
  for (const b of list) for (const r of b.restored) out.write(`${b.id} restored to ${r.image} at ${r.restoredAt} with checkpoint ${r.checkpoint}\n`);
}

export async function cmdRestore(argv: string[], out: Out): Promise<void> {
  const a = parseArgs(argv, { flags: ['force', 'checkpoint'], options: ['repo', 'to', 'format'] });
  if (a.flags.has('help')) return out.write(BACKUP_HELP.restore + '\n');
  if (a.positionals.length !== 1) throw new StrataError('E_BAD_INPUT', 'wrong arguments: name one backup ID; see strata restore --help');
  const to = a.options.get('to');
  if (!to) throw new StrataError('E_BAD_INPUT', 'strata restore needs --to PATH');
  const format = a.options.get('format') ?? 'qcow2';
  if (format !== 'qcow2' && format !== 'raw') throw new StrataError('E_BAD_INPUT', `--format ${format}: expected qcow2 or raw`);
  const repo = repoOption(a, 'restore');
  const r = await withHistory((db) => recordedRestore(db, { repo, id: a.positionals[0], to, format, force: a.flags.has('force'), checkpoint: a.flags.has('checkpoint') }));
  if (a.flags.has('json')) return out.write(JSON.stringify(r, null, 2) + '\n');
  out.write(`Restored ${r.id} to ${r.to} (${format}, ${humanBytes(r.bytes)} on disk)\n`);
  if (r.checkpoint) out.write(`  new checkpoint: ${r.checkpoint} (the next strata backup of ${r.to} into ${repo} is incremental to ${r.id})\n`);
}

export async function cmdVerify(argv: string[], out: Out): Promise<void> {
  const a = parseArgs(argv, { options: ['repo'] });
  if (a.flags.has('help')) return out.write(BACKUP_HELP.verify + '\n');
  if (a.positionals.length > 1) throw new StrataError('E_BAD_INPUT', 'wrong arguments; see strata verify --help');
  const repo = Repository.open(repoOption(a, 'verify'));
  const { verifyRepository } = await import('../backup/verify.ts');
  const id = a.positionals[0];
  const results = await withHistory((db) => new BackupActivityLog(db).record('verify', repo.dir, id ? `verify ${id}` : 'verify every point', null, () => verifyRepository(repo, id), verifyEnd));
  if (a.flags.has('json')) out.write(JSON.stringify(results, null, 2) + '\n');
  else for (const r of results) out.write(`${r.id}: ${r.ok ? `ok (${humanBytes(r.checkedBytes)} of data re-read)` : 'DAMAGED'}\n${r.problems.map((p) => `  - ${p}\n`).join('')}`);
  const bad = results.filter((r) => !r.ok);
  if (bad.length) {
    throw new StrataError('E_CORRUPT', `${repo.dir}: damaged backups: ${bad.map((r) => `${r.id} (${r.file}): ${r.problems[0]}`).join('; ')}`, { file: bad[0].file });
  }
}

export async function cmdPrune(argv: string[], out: Out): Promise<void> {
  const a = parseArgs(argv, { flags: ['yes'], options: ['repo', 'keep-last', 'keep-daily', 'keep-weekly'] });
  if (a.flags.has('help')) return out.write(BACKUP_HELP.prune + '\n');
  if (a.positionals.length) throw new StrataError('E_BAD_INPUT', 'wrong arguments; see strata prune --help');
  const n = (k: string) => {
    const v = a.options.get(k);
    if (v === undefined) return 0;
    if (!/^\d+$/.test(v)) throw new StrataError('E_BAD_INPUT', `--${k} ${v}: expected a whole number`);
    return Number(v);
  };
  const policy = { keepLast: n('keep-last'), keepDaily: n('keep-daily'), keepWeekly: n('keep-weekly') };
  if (!keepsSomething(policy)) {
    throw new StrataError('E_BAD_INPUT', 'strata prune needs at least one of --keep-last, --keep-daily, --keep-weekly above 0 (it never removes every backup)');
  }
  const { prune } = await import('../backup/prune.ts');
  // Applied, it is journaled in the history database first (a plan writes nothing, not even that).
  // A prune a killed Strata left unfinished is finished or rolled back first (journaled, so a plan too).
  const p = a.flags.has('yes')
    ? await withHistory((db) => journaledPrune(db, repoOption(a, 'prune'), policy, null))
    : await prune(repoOption(a, 'prune'), policy, false, {}, recoverLeftPrunes(repoOption(a, 'prune')));
  if (a.flags.has('json')) return out.write(JSON.stringify(p, null, 2) + '\n');
  for (const r of p.recovered) out.write(`${r}\n`);
  for (const k of p.keep) out.write(`keep    ${k.id}: ${k.why.join(', ')}\n`);
  for (const m of p.merge) out.write(`${p.applied ? 'merged ' : 'merge  '} ${m.from.join(', ')} into ${m.into}, which then builds on ${m.parent}${m.grownBytes !== null ? ` (grew ${humanBytes(m.grownBytes)})` : ''}\n`);
  for (const r of p.remove) out.write(`${p.applied ? 'removed' : 'remove '} ${r.id}: ${r.file} (${humanBytes(r.bytes)})${r.mergedInto ? `, once merged into ${r.mergedInto}` : ''}\n`);
  for (const o of p.orphans) out.write(`${p.applied ? 'removed' : 'remove '} ${o} (not listed in the manifest)\n`);
  if (!p.applied && (p.remove.length || p.orphans.length)) out.write(`\nNothing was removed. Run again with --yes to free ${humanBytes(p.freedBytes)}.\n`);
}
