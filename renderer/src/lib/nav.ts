/** The app's top-level views (the rail on the left). */
export type AppView = 'workspace' | 'connections' | 'jobs' | 'history';
