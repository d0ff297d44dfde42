// The admin credential and the local handle: what a CLI on the same machine trusts.
import { chmod, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  acceptedTokens,
  adminCredentials,
  authorised,
  LOCAL_HANDLE_FILE,
  readLocalHandle,
  writeLocalHandle,
} from '../../src/admin/credential.ts';

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'reins-handle-'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

const handle = { url: 'http://127.0.0.1:9464', token: 'local-token', pid: process.pid };

describe('the admin credential', () => {
  it('accepts the operator’s credential and this start’s local one, nothing else', () => {
    const credentials = adminCredentials('o'.repeat(40));
    const tokens = acceptedTokens(credentials);
    expect(authorised(`Bearer ${'o'.repeat(40)}`, tokens)).toBe(true);
    expect(authorised(`bearer  ${credentials.local}`, tokens)).toBe(true);
    for (const header of [
      undefined,
      '',
      'Bearer',
      `Basic ${credentials.local}`,
      `Bearer ${credentials.local}x`,
    ]) {
      expect(authorised(header, tokens), String(header)).toBe(false);
    }
  });

  it('makes a different local credential at every start, never the configured one', () => {
    const a = adminCredentials('o'.repeat(40));
    const b = adminCredentials('o'.repeat(40));
    expect(a.local).not.toBe(b.local);
    expect(a.local).not.toBe(a.configured);
  });
});

describe('the local handle', () => {
  it('is written for this user only and read back while its process lives', async () => {
    const remove = await writeLocalHandle(dir, handle);
    expect(await readLocalHandle(dir)).toEqual(handle);
    await remove();
    expect(await readLocalHandle(dir)).toBeNull();
  });

  it('is ignored when others may read it, when it is a link, or when its process is gone', async () => {
    const file = join(dir, LOCAL_HANDLE_FILE);
    await writeFile(file, JSON.stringify(handle), { mode: 0o644 });
    await chmod(file, 0o644);
    expect(await readLocalHandle(dir)).toBeNull();
    await rm(file);
    const elsewhere = join(dir, 'elsewhere.json');
    await writeFile(elsewhere, JSON.stringify(handle), { mode: 0o600 });
    await symlink(elsewhere, file);
    expect(await readLocalHandle(dir)).toBeNull();
    await rm(file);
    await writeFile(file, JSON.stringify({ ...handle, pid: 2 ** 22 + 12345 }), { mode: 0o600 });
    expect(await readLocalHandle(dir)).toBeNull();
  });

  it('is ignored when it names anything but a loopback http URL: the CLI would send it the credential', async () => {
    for (const url of [
      'http://attacker.example:9464',
      'https://127.0.0.1:9464',
      'data:text/plain,x',
      'nonsense',
    ]) {
      await writeFile(join(dir, LOCAL_HANDLE_FILE), JSON.stringify({ ...handle, url }), { mode: 0o600 });
      expect(await readLocalHandle(dir), url).toBeNull();
      await rm(join(dir, LOCAL_HANDLE_FILE));
    }
  });
});
