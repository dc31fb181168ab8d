// A minimal application menu: standard roles only (no links, no remote content). Edit roles are
// needed on macOS for copy/paste to work in text fields; DevTools only in an unpackaged run.
import type { MenuItemTemplate } from './electron-api.ts';

export interface MenuContext {
  platform: NodeJS.Platform;
  appName: string;
  isPackaged: boolean;
}

export function menuTemplate(ctx: MenuContext): MenuItemTemplate[] {
  const mac = ctx.platform === 'darwin';
  const template: MenuItemTemplate[] = [];
  if (mac) {
    template.push({
      label: ctx.appName,
      submenu: [
        { role: 'about' },
        { type: 'separator' },
        { role: 'services' },
        { type: 'separator' },
        { role: 'hide' },
        { role: 'hideOthers' },
        { role: 'unhide' },
        { type: 'separator' },
        { role: 'quit' },
      ],
    });
  }
  template.push({ label: 'File', submenu: [mac ? { role: 'close' } : { role: 'quit' }] });
  template.push({
    label: 'Edit',
    submenu: [{ role: 'undo' }, { role: 'redo' }, { type: 'separator' }, { role: 'cut' }, { role: 'copy' }, { role: 'paste' }, { role: 'selectAll' }],
  });
  template.push({
    label: 'View',
    submenu: [
      { role: 'reload' },
      ...(ctx.isPackaged ? [] : [{ role: 'toggleDevTools' } as MenuItemTemplate]),
      { type: 'separator' },
      { role: 'resetZoom' },
      { role: 'zoomIn' },
      { role: 'zoomOut' },
      { type: 'separator' },
      { role: 'togglefullscreen' },
    ],
  });
  template.push({ label: 'Window', submenu: mac ? [{ role: 'minimize' }, { role: 'zoom' }, { type: 'separator' }, { role: 'front' }] : [{ role: 'minimize' }, { role: 'close' }] });
  return template;
}
