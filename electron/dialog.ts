// The native file picker behind 'dialog:open-image': one disk image, or null when cancelled.
import type { BrowserWindowLike, DialogLike, OpenDialogOptions } from './electron-api.ts';

export const IMAGE_DIALOG_OPTIONS: OpenDialogOptions = {
  title: 'Open a disk image',
  buttonLabel: 'Open',
  properties: ['openFile', 'showHiddenFiles', 'dontAddToRecent'],
  filters: [
    { name: 'Disk images (qcow2, raw, img)', extensions: ['qcow2', 'qcow', 'raw', 'img'] },
    { name: 'All files', extensions: ['*'] },
  ],
};

export function createOpenImageDialog(dialog: DialogLike, getWindow: () => BrowserWindowLike | null | undefined): () => Promise<string | null> {
  return async () => {
    const win = getWindow();
    const r = win && !win.isDestroyed() ? await dialog.showOpenDialog(win, IMAGE_DIALOG_OPTIONS) : await dialog.showOpenDialog(IMAGE_DIALOG_OPTIONS);
    if (r.canceled || r.filePaths.length === 0) return null;
    return r.filePaths[0];
  };
}
