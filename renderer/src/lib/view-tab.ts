/** The views of a selected image. */
export type ViewTab = 'chain' | 'inspector' | 'history' | 'backups';
