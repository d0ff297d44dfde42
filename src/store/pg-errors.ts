// Which PostgreSQL failures mean "the database is unavailable", and how to say so in one line
// that tells the operator what to fix. Messages never contain the password from the URL: they
// end up in logs and terminals.
import { StoreError } from './db.ts';

/** The URL with its password (userinfo or `password=` parameter) replaced by `***`. */
export function redactUrl(url: string): string {
  return url.replace(/^([a-z]+:\/\/[^:@/]*):[^@/]*@/i, '$1:***@').replace(/([?&]password=)[^&]*/gi, '$1***');
}

// Errors from the socket or the DNS lookup rather than from PostgreSQL.
const NETWORK_ERRNOS = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ENOENT',
  'ENOTFOUND',
  'EAI_AGAIN',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'EPIPE',
  'EACCES',
]);

function codeOf(err: unknown): string | undefined {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code : undefined;
}

function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** True when `err` says the server could not be reached or the connection was lost. */
export function isUnavailable(err: unknown): boolean {
  if (err instanceof StoreError) return err.code === 'database_unavailable';
  const code = codeOf(err);
  if (code !== undefined) {
    // SQLSTATE class 08 is "connection exception"; 57P01-57P03 are server shutdown and startup;
    // class 28 is a refused login; 3D000 a database that does not exist.
    if (/^08/.test(code) || /^57P0[1-3]$/.test(code) || /^28/.test(code) || code === '3D000') return true;
    if (NETWORK_ERRNOS.has(code)) return true;
  }
  return /Connection terminated|timeout exceeded when trying to connect|Connection closed/i.test(
    messageOf(err),
  );
}

function hint(err: unknown): string {
  const code = codeOf(err) ?? '';
  if (code === 'ECONNREFUSED' || code === 'ENOENT' || /^57P0/.test(code)) {
    return 'is the server running and listening there?';
  }
  if (code === 'ENOTFOUND' || code === 'EAI_AGAIN') return 'check the host name in DATABASE_URL';
  if (/^28/.test(code)) return 'check the user name and password in DATABASE_URL';
  if (code === '3D000') return 'create the database (createdb) or fix its name in DATABASE_URL';
  return 'check DATABASE_URL and that the server is reachable';
}

/** A `database_unavailable` StoreError for `err`, naming the server but not the password. */
export function unavailable(url: string, err: unknown): StoreError {
  if (err instanceof StoreError) return err;
  return new StoreError(
    'database_unavailable',
    `cannot use PostgreSQL at ${redactUrl(url)}: ${messageOf(err)}; ${hint(err)}`,
  );
}

/** Connection failures become StoreErrors; SQL errors pass through with their SQLSTATE `code`. */
export function classify(url: string, err: unknown): unknown {
  return isUnavailable(err) ? unavailable(url, err) : err;
}
