// Bitmaps Strata adds for a moment and removes again. They are not checkpoints: the
// chain view, the checkpoint rules and name lists leave them out.

/** disabled transient copies that a live read exports over NBD (bitmaps/live-contents.ts) */
export const SHOW_COPY_PREFIX = 'strata-show-';
/** the recording bitmap that covers a commit's switch-over (plans/commit-with-bitmaps.ts) */
export const SWITCH_PREFIX = 'strata-switch-';

/** a bitmap a stream sets aside while it reorders the top's bitmaps (repair/stream.ts) */
export const KEEP_PREFIX = 'strata-keep-';

/** a backup's own bitmaps on the disk's top node while it runs (backup/take.ts): the merged set, the recording bridge */
export const BACKUP_PREFIX = 'strata-bk-';

export function isStrataTemporary(name: string): boolean {
  return name.startsWith(SHOW_COPY_PREFIX) || name.startsWith(BACKUP_PREFIX) || name.startsWith(SWITCH_PREFIX) || name.startsWith(KEEP_PREFIX);
}
