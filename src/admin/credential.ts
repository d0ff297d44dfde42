// The admin API's credential, and the local handle that lets CLI commands on the same machine
// find a running server on the embedded database.
//
// Threat: the admin API applies policies and reads every tenant's audit trail; it is never
// anonymous. The credential is REINS_ADMIN_TOKEN when the operator sets one (several servers,
// remote CLIs), or a random one per start. The random one is left, with the admin URL, in the
// data directory as admin.json with mode 0600: whoever may read the embedded database's files
// may already read and rewrite the whole database, so that file grants nothing new (the same
// reasoning as a Docker socket or a Jupyter token file).
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { lstat, readFile, unlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

export const LOCAL_HANDLE_FILE = 'admin.json';

export interface AdminCredentials {
  /** REINS_ADMIN_TOKEN, when the operator set one. */
  readonly configured: string | undefined;
  /**
   * Made for this start and only ever written to the local handle: the operator's long-lived
   * credential never lands on disk, and a handle left behind by a crash dies with the start.
   */
  readonly local: string;
}

export function adminCredentials(configured: string | undefined): AdminCredentials {
  return { configured, local: randomBytes(32).toString('base64url') };
}

/** Every credential the admin API accepts. */
export function acceptedTokens(credentials: AdminCredentials): string[] {
  return credentials.configured === undefined
    ? [credentials.local]
    : [credentials.configured, credentials.local];
}

/** Whether an `Authorization` header carries one of `tokens` (constant time: no timing oracle). */
export function authorised(header: string | undefined, tokens: readonly string[]): boolean {
  const match = /^Bearer +(\S+)\s*$/i.exec(header ?? '');
  if (!match?.[1]) return false;
  const digest = (text: string) => createHash('sha256').update(text).digest();
  const presented = digest(match[1]);
  let ok = false;
  // Every token compared, whichever matches: the time taken says nothing about which.
  for (const token of tokens) ok = timingSafeEqual(presented, digest(token)) || ok;
  return ok;
}

/** What `reins serve` leaves in its data directory for local CLI commands. */
export interface LocalHandle {
  readonly url: string;
  readonly token: string;
  readonly pid: number;
}

export async function writeLocalHandle(dataDir: string, handle: LocalHandle): Promise<() => Promise<void>> {
  const file = join(dataDir, LOCAL_HANDLE_FILE);
  await unlink(file).catch(() => undefined);
  // flag wx: created fresh with mode 0600, never an existing file (or a planted symlink) reused.
  await writeFile(file, `${JSON.stringify(handle)}\n`, { mode: 0o600, flag: 'wx' });
  return async () => {
    // Only our own: a server started after this one (same directory, this one stopping late)
    // has written its own handle.
    const current = await readLocalHandle(dataDir);
    if (current?.pid === handle.pid) await unlink(file).catch(() => undefined);
  };
}

/**
 * The handle of the server holding `dataDir`, or null when there is none, it has gone, or it is
 * not one this user's server could have written. Threat: the CLI sends the handle's credential
 * and the policy files to the handle's URL, so a handle that is a link, belongs to another
 * user, is readable by others, or names anything but a loopback http URL is ignored.
 */
export async function readLocalHandle(dataDir: string): Promise<LocalHandle | null> {
  const file = join(dataDir, LOCAL_HANDLE_FILE);
  const info = await lstat(file).catch(() => null);
  if (info === null || !info.isFile() || (info.mode & 0o077) !== 0) return null;
  if (typeof process.getuid === 'function' && info.uid !== process.getuid()) return null;
  const text = await readFile(file, 'utf8').catch(() => null);
  if (text === null) return null;
  try {
    const value = JSON.parse(text) as Partial<LocalHandle>;
    if (typeof value.url !== 'string' || typeof value.token !== 'string' || typeof value.pid !== 'number') {
      return null;
    }
    if (!isLoopbackHttp(value.url) || !isOwnProcess(value.pid)) return null;
    return { url: value.url, token: value.token, pid: value.pid };
  } catch {
    return null;
  }
}

function isLoopbackHttp(text: string): boolean {
  if (!URL.canParse(text)) return false;
  const url = new URL(text);
  return url.protocol === 'http:' && ['127.0.0.1', '[::1]', 'localhost'].includes(url.hostname);
}

/** Alive and this user's (EPERM: another user's process, which cannot be the one that wrote it). */
function isOwnProcess(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** The admin URL as a local CLI should dial it: an unspecified bind address becomes loopback. */
export function localUrl(adminUrl: string): string {
  const url = new URL(adminUrl);
  if (url.hostname === '0.0.0.0') url.hostname = '127.0.0.1';
  if (url.hostname === '[::]') url.hostname = '[::1]';
  return url.origin;
}
