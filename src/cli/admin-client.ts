// The CLI's side of the admin API (src/admin/api.ts): which running server to ask, and asking.
//
// A command talks to a running server instead of the database when
// - `--server URL` (REINS_SERVER) is given: the credential is REINS_ADMIN_TOKEN; or
// - no DATABASE_URL is set and a live `reins serve` holds the embedded data directory: it left
//   its admin URL and credential in <data dir>/admin.json (mode 0600) for exactly this.
// Otherwise the command opens the database itself, as before.
import { type Command, Option } from 'commander';
import { readLocalHandle } from '../admin/credential.ts';
import type { Db } from '../store/db.ts';
import { migrate } from '../store/migrate.ts';
import { AdminCallError } from './admin-call-error.ts';
import { type DatabaseOptions, openDatabaseFromOptions } from './database-options.ts';
import { CliError, EXIT } from './failure.ts';
import { printable } from './table.ts';

export interface AdminTarget {
  readonly url: string;
  readonly token: string;
}

export interface ServerOptions {
  server?: string | undefined;
  databaseUrl?: string | undefined;
  dataDir: string;
}

export function addServerOption(cmd: Command): Command {
  return cmd.addOption(
    new Option(
      '--server <url>',
      "a running reins server's admin URL (e.g. http://127.0.0.1:9464), credential in REINS_ADMIN_TOKEN; default: the server holding the embedded database, if any",
    ).env('REINS_SERVER'),
  );
}

/** The server to ask, or null: open the database directly. */
export async function adminTarget(options: ServerOptions): Promise<AdminTarget | null> {
  if (options.server !== undefined && options.server !== '') {
    if (!URL.canParse(options.server))
      throw new CliError(`--server ${options.server} is not a URL`, EXIT.usage);
    const token = process.env.REINS_ADMIN_TOKEN;
    if (!token) {
      throw new CliError(
        `--server ${options.server}: set REINS_ADMIN_TOKEN to the server's admin credential`,
        EXIT.usage,
      );
    }
    return { url: options.server, token };
  }
  if (options.databaseUrl || options.dataDir === 'memory') return null;
  const handle = await readLocalHandle(options.dataDir);
  return handle === null ? null : { url: handle.url, token: handle.token };
}

/** One admin API call; a failure to reach the server or a refusal is an AdminCallError. */
export async function adminCall<T>(
  target: AdminTarget,
  method: 'GET' | 'POST',
  path: string,
  body?: unknown,
): Promise<{ status: number; body: T }> {
  const url = new URL(`/admin/v1/${path}`, target.url);
  let response: Response;
  try {
    response = await fetch(url, {
      method,
      headers: {
        authorization: `Bearer ${target.token}`,
        ...(body === undefined ? {} : { 'content-type': 'application/json' }),
      },
      body: body === undefined ? undefined : JSON.stringify(body),
      signal: AbortSignal.timeout(60_000),
      // The credential and the policy files go to the URL given, never where a redirect points.
      redirect: 'error',
    });
  } catch (err) {
    const why =
      err instanceof Error ? ((err.cause as Error | undefined)?.message ?? err.message) : String(err);
    throw new AdminCallError('server_unreachable', `cannot reach the reins server at ${target.url}: ${why}`);
  }
  const text = await response.text();
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    throw new AdminCallError(
      'not_admin_api',
      `${url.origin} did not answer as a reins admin API (HTTP ${response.status})`,
    );
  }
  if (response.status === 401) {
    throw new AdminCallError(
      'credential_refused',
      `${target.url} refused the admin credential: check REINS_ADMIN_TOKEN`,
    );
  }
  // Anything but success (and 422, a policy the server refused, which the caller reports) is a
  // failure: a proxy's 403 or 413 must never read as "applied".
  if ((response.status < 200 || response.status > 299) && response.status !== 422) {
    const description = (parsed as { error_description?: unknown }).error_description;
    const why = printable(typeof description === 'string' ? description : text.slice(0, 200));
    throw new AdminCallError(
      response.status >= 500 ? 'server_failed' : 'request_refused',
      `the reins server at ${target.url} answered ${response.status}: ${why}`,
    );
  }
  return { status: response.status, body: parsed as T };
}

/**
 * Runs a command on the running server's admin API when there is one to ask (adminTarget), else
 * on the database it opens — after applying pending migrations, so a fresh database answers.
 */
export async function onServerOrDatabase<T>(
  options: ServerOptions & DatabaseOptions,
  remote: (target: AdminTarget) => Promise<T>,
  local: (db: Db) => Promise<T>,
): Promise<T> {
  const target = await adminTarget(options);
  if (target !== null) return remote(target);
  const db = await openDatabaseFromOptions(options);
  try {
    await migrate(db);
    return await local(db);
  } finally {
    await db.close();
  }
}
