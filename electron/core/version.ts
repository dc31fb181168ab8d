// Injected by the bundler from package.json; falls back when run from sources (tests, tsx).
declare const __STRATA_VERSION__: string | undefined;
export const VERSION: string = typeof __STRATA_VERSION__ === 'string' ? __STRATA_VERSION__ : '0.1.0-dev';
