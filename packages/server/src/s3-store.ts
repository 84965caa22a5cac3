import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CreateMultipartUploadCommand,
  DeleteObjectCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
  UploadPartCommand,
} from '@aws-sdk/client-s3';
import { UserError } from '@nst/core';
import { checkKey, StoreUnavailableError, type BlobStore, type StoredBlob } from './store.js';

/** Where an `s3://bucket/prefix` store lives. */
export interface S3Location {
  readonly bucket: string;
  /** '' or a prefix ending in '/'. */
  readonly prefix: string;
}

/** Parses `s3://bucket[/prefix]`; errors name `field` (the flag that gave it). */
export function parseS3Url(url: string, field = 'store'): S3Location {
  const m = /^s3:\/\/([a-z0-9][a-z0-9.-]{1,61}[a-z0-9])(?:\/(.*))?$/.exec(url);
  if (!m)
    throw new UserError(`'${url}' is not s3://bucket/prefix (a bucket name is 3-63 lower-case letters, digits, '.' and '-')`, { field });
  const prefix = (m[2] ?? '').replace(/\/+$/, '');
  if (prefix !== '' && !/^[A-Za-z0-9!_.*'()/-]+$/.test(prefix))
    throw new UserError(`the prefix '${prefix}' has characters other than letters, digits and !_.*'()/-`, { field });
  return { bucket: m[1], prefix: prefix === '' ? '' : `${prefix}/` };
}

export interface S3StoreOptions {
  /** A client of one's own (tests); default: the standard credential chain, AWS_ENDPOINT_URL, path-style addressing. */
  readonly client?: S3Client;
  /** Blobs of at least this many bytes are uploaded in parts (default 16 MiB). */
  readonly multipartBytes?: number;
  /** The size of each part (default 8 MiB; S3 wants at least 5 MiB but for the last). */
  readonly partBytes?: number;
}

/**
 * The client every S3 store uses: the SDK's standard credential chain
 * (environment, profile, instance role ...), the endpoint from
 * AWS_ENDPOINT_URL when set (MinIO, Ceph, R2 ...), and path-style
 * addressing, which every S3-compatible server understands. A request that
 * cannot connect within 5 s, or is not answered within 60 s, fails: the
 * store then reports itself unavailable rather than hang a job.
 */
export function defaultS3Client(): S3Client {
  return new S3Client({
    forcePathStyle: true,
    region: process.env.AWS_REGION ?? process.env.AWS_DEFAULT_REGION ?? 'us-east-1',
    maxAttempts: 3,
    requestHandler: { connectionTimeout: 5000, requestTimeout: 60_000 },
  });
}

/** S3's answers that mean "the store cannot serve now", by the trouble they are. */
const FULL = new Set(['QuotaExceeded', 'EntityTooLarge', 'InsufficientStorage', 'XMinioStorageFull']);
const READ_ONLY = new Set(['AccessDenied', 'AllAccessDisabled', 'InvalidAccessKeyId', 'SignatureDoesNotMatch']);

/**
 * An S3 failure as a StoreUnavailableError: unreachable endpoint, timeouts,
 * throttling, missing bucket, refused credentials. The message names the
 * code only (no endpoint, bucket or key: it may reach a response); the
 * SDK's error is kept as the cause, for the log.
 */
function s3Failure(e: unknown, writing: boolean): StoreUnavailableError {
  const err = e as { name?: string; code?: string; Code?: string };
  let code = String(err?.code ?? err?.Code ?? err?.name ?? 'error').replace(/[^A-Za-z0-9_-]/g, '') || 'error';
  // An answer with no body (HEAD, or a server that sends none) has only its status to tell.
  if (['Unknown', 'UnknownError', 'Error', 'error'].includes(code)) code = BY_STATUS[statusOf(e) ?? 0] ?? `HTTP${statusOf(e) ?? ''}`;
  const trouble = writing && FULL.has(code) ? 'full' : writing && READ_ONLY.has(code) ? 'read-only' : 'unavailable';
  return new StoreUnavailableError(trouble, code, e);
}

const BY_STATUS: Record<number, string> = { 403: 'AccessDenied', 503: 'SlowDown', 507: 'InsufficientStorage', 500: 'InternalError' };
const statusOf = (e: unknown) => (e as { $metadata?: { httpStatusCode?: number } })?.$metadata?.httpStatusCode;
const isMissing = (e: unknown) => statusOf(e) === 404 || ['NoSuchKey', 'NotFound'].includes((e as Error)?.name);
/** The answer to a conditional write whose key exists (412), or that raced another one (409). */
const isTaken = (e: unknown) => statusOf(e) === 412 || statusOf(e) === 409;

/**
 * A BlobStore in an S3 bucket (under a prefix). `putOnce` is a conditional
 * put (If-None-Match: *, a conditional CompleteMultipartUpload for large
 * blobs), after a HEAD of the key: a repeated attempt finds the blob there
 * and writes nothing, also on servers that ignore the condition (s3rver,
 * older MinIO), where only two writes at the same instant (which the queue's
 * job lock rules out) could both land. Readers see the old or the new
 * bytes, never a mix: S3 replaces objects whole.
 */
export function s3Store(url: string, options: S3StoreOptions = {}): BlobStore {
  const { bucket, prefix } = parseS3Url(url);
  const client = options.client ?? defaultS3Client();
  const multipartBytes = options.multipartBytes ?? 16 * 2 ** 20;
  const partBytes = options.partBytes ?? 8 * 2 ** 20;
  const objectKey = (key: string) => `${prefix}${checkKey(key)}`;
  const send = async <T>(writing: boolean, call: () => Promise<T>): Promise<T> => {
    try {
      return await call();
    } catch (e) {
      if (isMissing(e) || isTaken(e)) throw e;
      throw s3Failure(e, writing);
    }
  };
  const exists = async (key: string) => {
    const k = objectKey(key);
    try {
      await send(false, () => client.send(new HeadObjectCommand({ Bucket: bucket, Key: k })));
      return true;
    } catch (e) {
      if (isMissing(e)) return false;
      throw e;
    }
  };

  /** Uploads in parts under the object key `Key`; with `once`, the completion is conditional. Returns false when the key was taken. */
  const multipart = async (Key: string, bytes: Uint8Array, once: boolean): Promise<boolean> => {
    const { UploadId } = await send(true, () => client.send(new CreateMultipartUploadCommand({ Bucket: bucket, Key })));
    try {
      const parts: { ETag?: string; PartNumber: number }[] = [];
      for (let offset = 0, n = 1; offset < bytes.length; offset += partBytes, n++) {
        const Body = bytes.subarray(offset, Math.min(offset + partBytes, bytes.length));
        const { ETag } = await send(true, () => client.send(new UploadPartCommand({ Bucket: bucket, Key, UploadId, PartNumber: n, Body })));
        parts.push({ ETag, PartNumber: n });
      }
      await send(true, () =>
        client.send(
          new CompleteMultipartUploadCommand({
            Bucket: bucket,
            Key,
            UploadId,
            MultipartUpload: { Parts: parts },
            ...(once ? { IfNoneMatch: '*' } : {}),
          }),
        ),
      );
      return true;
    } catch (e) {
      await client.send(new AbortMultipartUploadCommand({ Bucket: bucket, Key, UploadId })).catch(() => undefined);
      if (once && isTaken(e)) return false;
      throw e;
    }
  };

  const write = async (key: string, bytes: Uint8Array, once: boolean): Promise<boolean> => {
    const k = objectKey(key);
    if (bytes.length >= multipartBytes) return multipart(k, bytes, once);
    try {
      await send(true, () =>
        client.send(new PutObjectCommand({ Bucket: bucket, Key: k, Body: bytes, ...(once ? { IfNoneMatch: '*' } : {}) })),
      );
      return true;
    } catch (e) {
      if (once && isTaken(e)) return false;
      throw e;
    }
  };

  return {
    async get(key) {
      const k = objectKey(key);
      try {
        const out = await send(false, () => client.send(new GetObjectCommand({ Bucket: bucket, Key: k })));
        const bytes = out.Body ? await send(false, () => out.Body!.transformToByteArray()) : new Uint8Array();
        // A body cut short without an error (a connection closed early) is a failed read, never a blob.
        if (out.ContentLength !== undefined && bytes.length !== out.ContentLength)
          throw new StoreUnavailableError('unavailable', 'a short read');
        return bytes;
      } catch (e) {
        if (isMissing(e)) return undefined;
        throw e;
      }
    },
    put: async (key, bytes) => {
      await write(key, bytes, false);
    },
    putOnce: async (key, bytes) => !(await exists(key)) && (await write(key, bytes, true)),
    async delete(key) {
      const k = objectKey(key);
      await send(true, () => client.send(new DeleteObjectCommand({ Bucket: bucket, Key: k })));
    },
    async *list(under) {
      const start = `${objectKey(under)}/`;
      let ContinuationToken: string | undefined;
      do {
        const page = await send(false, () => client.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: start, ContinuationToken })));
        for (const o of page.Contents ?? [])
          if (o.Key) yield { key: o.Key.slice(prefix.length), modified: o.LastModified ?? new Date(0) } satisfies StoredBlob;
        ContinuationToken = page.IsTruncated ? page.NextContinuationToken : undefined;
      } while (ContinuationToken);
    },
  };
}
