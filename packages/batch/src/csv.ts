import { UserError } from '@nst/core';

/**
 * A CSV reader for manifests (RFC 4180: comma-separated, fields in double
 * quotes may hold commas, newlines and doubled quotes). Returns rows with the
 * line each starts on, so that errors can name it.
 *
 * Strict where a mistake would otherwise pass silently: every row has as
 * many fields as the first (the header), since a short row would run with
 * defaults for what it lacks; a quote left open, which would swallow the rest
 * of the file, and text after a closing quote (an undoubled quote inside one) are errors. Each error is a
 * UserError naming the line.
 */
export function parseCsv(text: string): { line: number; fields: string[] }[] {
  const rows: { line: number; fields: string[] }[] = [];
  let fields: string[] = [];
  let field = '';
  let quoted = false;
  /** The line the open quote is on, and whether the field's closing quote has been read. */
  let quoteLine = 0;
  let closed = false;
  let line = 1;
  let rowLine = 1;
  let i = 0;
  const endField = () => {
    fields.push(field);
    field = '';
    closed = false;
  };
  const endRow = () => {
    endField();
    if (fields.length > 1 || fields[0].trim() !== '') {
      const width = rows[0]?.fields.length ?? fields.length;
      if (fields.length !== width)
        throw new UserError(
          `line ${rowLine} has ${fields.length} field${fields.length === 1 ? '' : 's'}, the header ${width}${fields.length < width ? ' (leave a cell empty for a default, but keep its comma)' : ''}`,
        );
      rows.push({ line: rowLine, fields });
    }
    fields = [];
  };
  while (i < text.length) {
    const c = text[i];
    if (quoted) {
      if (c === '"' && text[i + 1] === '"') {
        field += '"';
        i += 2;
        continue;
      }
      if (c === '"') {
        quoted = false;
        closed = true;
      } else {
        if (c === '\n') line++;
        field += c;
      }
      i++;
      continue;
    }
    if (c === ',') endField();
    else if (c === '\n' || c === '\r') {
      if (c === '\r' && text[i + 1] === '\n') i++;
      endRow();
      line++;
      rowLine = line;
    } else if (closed) {
      if (c !== ' ' && c !== '\t')
        throw new UserError(`line ${line}: text after a closing quote (a quote inside a quoted field is written "")`);
    } else if (c === '"' && field === '') {
      quoted = true;
      quoteLine = line;
    } else field += c;
    i++;
  }
  if (quoted) throw new UserError(`line ${quoteLine}: a quoted field is not closed`);
  if (field !== '' || fields.length > 0 || closed) endRow();
  return rows;
}
