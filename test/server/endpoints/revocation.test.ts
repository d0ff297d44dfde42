// RFC 7009 revocation of reins' JWT access tokens over real HTTP, on every database backend:
// the ledger marks the token, the revocation feed gets an ordered row, listeners are woken.
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { exampleSources } from '../../policy/support.ts';
import { nextValue, testBackends } from '../../support/db.ts';
import { type AuthServer, startAuthServer } from '../provider/support.ts';
import { billing, billingToken, introspect, portal, post, useTestSecrets } from './support.ts';

useTestSecrets();

interface FeedRow {
  seq: string;
  kind: string;
  tenant: string;
  jti: string | null;
}

async function feed(server: AuthServer): Promise<FeedRow[]> {
  const { rows } = await server.db.query<FeedRow>(
    'select seq::text as seq, kind, tenant, jti from revocations order by seq',
  );
  return rows;
}

function jtiOf(token: string): string {
  const payload = JSON.parse(Buffer.from(String(token.split('.')[1]), 'base64url').toString()) as {
    jti: string;
  };
  return payload.jti;
}

describe.each(testBackends())('revocation on $name', (backend) => {
  let server: AuthServer;
  beforeEach(async () => {
    server = await startAuthServer(backend, exampleSources());
  });
  afterEach(async () => {
    await server.close();
  });

  it('makes introspection answer inactive, appends to the feed in order and wakes listeners', async () => {
    const first = await billingToken(server);
    const second = await billingToken(server);
    const notified: string[] = [];
    let wake: (payload: string) => void = () => undefined;
    const unlisten = await server.db.listen('reins_revocations', (payload) => {
      notified.push(payload);
      wake(payload);
    });
    try {
      const woken = nextValue<string>((resolve) => {
        wake = resolve;
      });
      const revoked = await post(server, '/revoke', { token: first }, billing());
      expect(revoked.status).toBe(200);
      await woken;
      const secondWoken = nextValue<string>((resolve) => {
        wake = resolve;
      });
      expect((await post(server, '/revoke', { token: second }, billing())).status).toBe(200);
      await secondWoken;

      expect((await introspect(server, first, portal())).body).toEqual({ active: false });
      expect((await introspect(server, second, portal())).body).toEqual({ active: false });
      const rows = await feed(server);
      expect(rows.map((r) => [r.kind, r.tenant, r.jti])).toEqual([
        ['token', 'acme', jtiOf(first)],
        ['token', 'acme', jtiOf(second)],
      ]);
      const [a, b] = rows.map((r) => BigInt(r.seq));
      expect(a !== undefined && b !== undefined && b > a).toBe(true);
      expect(notified).toEqual(rows.map((r) => r.seq));
      const { rows: ledger } = await server.db.query<{ revoked: boolean }>(
        'select revoked_at is not null as revoked from issued_tokens where jti = $1',
        [jtiOf(first)],
      );
      expect(ledger).toEqual([{ revoked: true }]);
    } finally {
      await unlisten();
    }
  });

  it('revokes a token only for the client it was issued to', async () => {
    const token = await billingToken(server);
    // support-portal is of the same tenant but did not obtain the token: 200, nothing revoked.
    expect((await post(server, '/revoke', { token }, portal())).status).toBe(200);
    expect((await introspect(server, token, portal())).body.active).toBe(true);
    expect(await feed(server)).toEqual([]);
  });

  it('answers 200 for unknown and garbage tokens, and for a second revocation, adding one feed row', async () => {
    expect((await post(server, '/revoke', { token: 'garbage' }, billing())).status).toBe(200);
    const token = await billingToken(server);
    expect((await post(server, '/revoke', { token }, billing())).status).toBe(200);
    expect((await post(server, '/revoke', { token }, billing())).status).toBe(200);
    expect(await feed(server)).toHaveLength(1);
  });

  it('refuses an unauthenticated caller with 401 invalid_client and revokes nothing', async () => {
    const token = await billingToken(server);
    const answer = await post(server, '/revoke', { token });
    expect(answer.status).toBe(401);
    expect(JSON.parse(answer.text)).toMatchObject({ error: 'invalid_client' });
    expect((await introspect(server, token, portal())).body.active).toBe(true);
  });
});
