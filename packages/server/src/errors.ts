/** An HTTP error: a status and a one-line JSON body naming the field (kebab-case) at fault. */
export class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly field?: string,
  ) {
    super(message);
  }
}

/**
 * Replaces absolute paths in a message with `<path>`: an error from the file
 * system (`ENOSPC: no space left on device, open '/srv/nst/.tmp/1-ab'`), a
 * worker's or Redis', may reach an API response, and no path of a server
 * may. A path is a '/' followed by more than a few non-space characters at
 * the start of the message or after a space, quote, '(' or '='.
 */
export function withoutPaths(message: string): string {
  return message.replace(/(^|[\s'"(=`])(?:file:\/\/)?\/[^\s'"`),;]+/g, '$1<path>');
}
