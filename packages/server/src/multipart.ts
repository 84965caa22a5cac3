import type http from 'node:http';
import busboy from 'busboy';
import { HttpError } from './errors.js';

export interface Upload {
  readonly field: string;
  readonly bytes: Buffer;
  /** The file name the client gave, if any (only ever shown back to users, never used as a path). */
  readonly filename?: string;
}

export interface MultipartLimits {
  /** Bytes per file. */
  readonly uploadBytes: number;
  /** Bytes of the whole body. */
  readonly requestBytes: number;
  readonly files: number;
}

/**
 * Parses a multipart/form-data body within the limits: files (bounded in
 * size and number), short text fields, and the body as a whole. Settles once:
 * at the first broken limit or malformed part it stops reading and rejects
 * with an HttpError (the caller answers and closes the connection, so the
 * rest of the body is never read); every stream it reads from has an error
 * listener, so that no body, however it ends, can take the process down.
 */
export function readMultipart(
  req: http.IncomingMessage,
  limits: MultipartLimits,
): Promise<{ files: Upload[]; fields: [string, string][] }> {
  return new Promise((resolve, reject) => {
    if (!/^multipart\/form-data/i.test(req.headers['content-type'] ?? ''))
      return reject(new HttpError(415, 'expected multipart/form-data'));
    let bb: busboy.Busboy;
    try {
      bb = busboy({
        headers: req.headers,
        limits: { fileSize: limits.uploadBytes, files: limits.files, fields: 40, fieldSize: 4096, parts: limits.files + 40 },
      });
    } catch (e) {
      return reject(new HttpError(400, `malformed multipart request (${(e as Error).message})`));
    }
    const files: Upload[] = [];
    const fields: [string, string][] = [];
    let settled = false;
    const fail = (e: HttpError) => {
      if (settled) return;
      settled = true;
      // Not bb.destroy(): this may run inside one of busboy's own events, and busboy goes on with its chunk after them.
      req.unpipe(bb);
      req.pause();
      reject(e);
    };
    const malformed = (e: Error) => fail(new HttpError(400, `malformed multipart request (${e.message})`));

    let received = 0;
    req.on('data', (chunk: Buffer) => {
      received += chunk.length;
      if (received > limits.requestBytes) fail(new HttpError(413, `the request is larger than ${limits.requestBytes} bytes`));
    });
    req.on('error', malformed);
    req.on('close', () => {
      if (!req.complete) fail(new HttpError(400, 'the request was cut short'));
    });

    bb.on('file', (field, stream, info) => {
      const chunks: Buffer[] = [];
      stream.on('data', (c: Buffer) => chunks.push(c));
      stream.on('limit', () => fail(new HttpError(413, `a file is larger than ${limits.uploadBytes} bytes`, field)));
      // A body that ends inside a file part errors the file's stream ("Unexpected end of form").
      stream.on('error', malformed);
      stream.on('end', () => files.push({ field, bytes: Buffer.concat(chunks), filename: info.filename }));
    });
    bb.on('field', (field, value, info) => {
      if (info.valueTruncated) fail(new HttpError(413, 'is too long', field));
      fields.push([field, value]);
    });
    bb.on('filesLimit', () => fail(new HttpError(413, `at most ${limits.files} files`, 'style')));
    bb.on('fieldsLimit', () => fail(new HttpError(413, 'too many fields')));
    bb.on('partsLimit', () => fail(new HttpError(413, 'too many parts')));
    bb.on('error', malformed);
    bb.on('close', () => {
      if (settled) return;
      settled = true;
      resolve({ files, fields });
    });
    req.pipe(bb);
  });
}
