// The three states a bitmap chip can show, from its on-disk flags.
import type { BitmapInfo } from '../../../electron/core/contract';

export type BitmapState = 'recording' | 'disabled' | 'in-use';

export function bitmapState(b: Pick<BitmapInfo, 'flags'>): BitmapState {
  // in-use wins: an inconsistent bitmap must never be trusted, whatever else it says.
  if (b.flags.includes('in-use')) return 'in-use';
  return b.flags.includes('auto') ? 'recording' : 'disabled';
}

export const STATE_LABEL: Record<BitmapState, string> = {
  recording: 'recording',
  disabled: 'disabled',
  'in-use': 'in use / inconsistent',
};

export const STATE_HELP: Record<BitmapState, string> = {
  recording: 'Recording: every write to this layer marks the bitmap (flag auto).',
  disabled: 'Disabled: the bitmap keeps what it recorded but no longer tracks new writes.',
  'in-use':
    'In use: a QEMU process has the image open read-write, or one crashed while it did. If no process holds the image, the bitmap is inconsistent and must not be trusted.',
};
