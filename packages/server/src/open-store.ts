import { s3Store } from './s3-store.js';
import { folderStore, sweepTemporaryFiles, type BlobStore } from './store.js';

/** A store named on the command line: `s3://bucket/prefix`, or a folder. */
export interface OpenedStore {
  readonly store: BlobStore;
  /** Removes what killed writers left (a folder's temporary files; S3 leaves none: an object is written whole or not at all). */
  sweep(): Promise<number>;
}

export function openStore(spec: string): OpenedStore {
  if (spec.startsWith('s3://')) return { store: s3Store(spec), sweep: async () => 0 };
  return { store: folderStore(spec), sweep: () => sweepTemporaryFiles(spec) };
}
