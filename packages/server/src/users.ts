import { createHash, timingSafeEqual } from 'node:crypto';
import { UserError } from '@nst/core';

/** Someone the API knows by a token. */
export interface ApiUser {
  readonly name: string;
  readonly token: string;
  /** An admin sees and controls every user's jobs. */
  readonly admin: boolean;
}

/** Tokens shorter than this are refused: a guessable token is no lock. */
export const MIN_TOKEN_LENGTH = 16;

/** Refuses a token too short to be a secret; `field` names where it came from (`token`, `tokenFile`). */
export function checkToken(token: string, field = 'token'): string {
  if (token.length < MIN_TOKEN_LENGTH)
    throw new UserError(`is ${token.length} characters; a token needs at least ${MIN_TOKEN_LENGTH} (make one with: openssl rand -hex 24)`, {
      field,
    });
  return token;
}

const NAME = /^[A-Za-z0-9._-]{1,64}$/;

/**
 * Parses a tokens file (`nst serve --tokens FILE`): one user a line,
 * `NAME TOKEN` or `NAME TOKEN admin`; blank lines and lines starting with
 * '#' are skipped. Errors name the line, never the token.
 */
export function parseTokensFile(text: string, field = 'tokens'): ApiUser[] {
  const users: ApiUser[] = [];
  text.split('\n').forEach((raw, k) => {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) return;
    const where = `line ${k + 1}`;
    const [name, token, role, ...rest] = line.split(/\s+/);
    if (!NAME.test(name)) throw new UserError(`${where}: the name must be 1-64 letters, digits, '.', '_' or '-'`, { field });
    if (token === undefined) throw new UserError(`${where}: expected NAME TOKEN [admin]`, { field });
    if ((role !== undefined && role !== 'admin') || rest.length > 0)
      throw new UserError(`${where}: after the token only 'admin' may follow`, { field });
    try {
      checkToken(token);
    } catch (e) {
      throw new UserError(`${where}: the token ${(e as UserError).detail}`, { field });
    }
    if (users.some((u) => u.name === name)) throw new UserError(`${where}: the name '${name}' is given twice`, { field });
    if (users.some((u) => u.token === token))
      throw new UserError(`${where}: the token is the same as ${users.find((u) => u.token === token)!.name}'s`, { field });
    users.push({ name, token, admin: role === 'admin' });
  });
  if (users.length === 0) throw new UserError('has no users (one a line: NAME TOKEN [admin])', { field });
  return users;
}

/** Finds the user of an `Authorization: Bearer` header, comparing digests in constant time. */
export function authenticator(users: readonly ApiUser[]): (authorization: string | undefined) => ApiUser | undefined {
  const digest = (s: string) => createHash('sha256').update(s).digest();
  const known = users.map((u) => ({ user: u, digest: digest(u.token) }));
  return (authorization) => {
    const m = /^Bearer (.+)$/.exec(authorization ?? '');
    if (!m) return undefined;
    const given = digest(m[1]);
    let found: ApiUser | undefined;
    for (const k of known) if (timingSafeEqual(given, k.digest)) found = k.user;
    return found;
  };
}
