import { createRequire } from 'node:module';

/** The version of nst that makes results (this package's, the same for every package of the project). */
export const NST_VERSION: string = (createRequire(import.meta.url)('../package.json') as { version: string }).version;
