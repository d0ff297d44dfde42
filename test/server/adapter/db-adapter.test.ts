import type { AdapterPayload } from 'oidc-provider';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AdapterError, createAdapterFactory } from '../../../src/server/adapter/index.ts';
import type { Db } from '../../../src/store/db.ts';
import { openMigratedDb, testBackends, uniqueName } from '../../support/db.ts';

describe.each(testBackends())('the oidc-provider adapter on $name', (backend) => {
  let db: Db;
  let adapterFor: ReturnType<typeof createAdapterFactory>;
  beforeAll(async () => {
    db = await openMigratedDb(backend);
    adapterFor = createAdapterFactory(db);
  });
  afterAll(() => db.close());

  it('finds what it stored, arrays and nested objects intact', async () => {
    const grants = adapterFor('Grant');
    const id = uniqueName('grant');
    const payload: AdapterPayload = {
      jti: id,
      kind: 'Grant',
      clientId: 'billing-agent',
      resource: ['urn:reins:gateway', 'https://other.example'],
      rar: [{ type: 'egress', locations: ['https://api.stripe.com/v1/'] }],
    };
    await grants.upsert(id, payload, 60);
    expect(await grants.find(id)).toEqual(payload);
  });

  it('replaces the payload when the same id is stored again', async () => {
    const sessions = adapterFor('Session');
    const id = uniqueName('session');
    await sessions.upsert(id, { jti: id, uid: 'u1', accountId: 'alice' }, 60);
    await sessions.upsert(id, { jti: id, uid: 'u1', accountId: 'bob' }, 60);
    expect(await sessions.find(id)).toMatchObject({ accountId: 'bob' });
  });

  it('keeps models apart: the same id under another model is not found', async () => {
    const id = uniqueName('shared');
    await adapterFor('AccessToken').upsert(id, { jti: id }, 60);
    expect(await adapterFor('RefreshToken').find(id)).toBeUndefined();
  });

  it('answers undefined for an id it never stored', async () => {
    expect(await adapterFor('Grant').find(uniqueName('missing'))).toBeUndefined();
  });

  it('answers undefined for an expired row that has not been swept yet', async () => {
    const tokens = adapterFor('AccessToken');
    const id = uniqueName('expired');
    await tokens.upsert(id, { jti: id }, -5);
    expect(await tokens.find(id)).toBeUndefined();
    const rows = await db.query('select 1 from oidc_models where model = $1 and id = $2', [
      'AccessToken',
      id,
    ]);
    expect(rows.rowCount).toBe(1);
  });

  it('keeps a row without expiresIn until it is destroyed', async () => {
    const clients = adapterFor('Client');
    const id = uniqueName('client');
    await clients.upsert(id, { client_id: id });
    expect(await clients.find(id)).toEqual({ client_id: id });
  });

  it('finds a session by its uid, and only a live one', async () => {
    const sessions = adapterFor('Session');
    const id = uniqueName('session');
    const uid = uniqueName('uid');
    await sessions.upsert(id, { jti: id, uid }, 60);
    expect(await sessions.findByUid(uid)).toMatchObject({ jti: id });

    const stale = uniqueName('uid');
    await sessions.upsert(uniqueName('session'), { uid: stale }, -1);
    expect(await sessions.findByUid(stale)).toBeUndefined();
  });

  it('finds a device code by its user code', async () => {
    const codes = adapterFor('DeviceCode');
    const id = uniqueName('device');
    const userCode = uniqueName('code').toUpperCase();
    await codes.upsert(id, { jti: id, userCode }, 60);
    expect(await codes.findByUserCode(userCode)).toMatchObject({ jti: id, userCode });
    expect(await codes.findByUserCode('NOPE-NOPE')).toBeUndefined();
  });

  it('consumes a row: consumed is set in the payload and the row stays findable', async () => {
    const codes = adapterFor('AuthorizationCode');
    const id = uniqueName('code');
    await codes.upsert(id, { jti: id }, 60);
    const before = Math.floor(Date.now() / 1000);
    await codes.consume(id);
    const found = await codes.find(id);
    expect(found?.consumed).toBeGreaterThanOrEqual(before - 5);
    const rows = await db.query<{ consumed: boolean }>(
      'select consumed_at is not null as consumed from oidc_models where model = $1 and id = $2',
      ['AuthorizationCode', id],
    );
    expect(rows.rows[0]?.consumed).toBe(true);
  });

  it('destroys a row of its own model only', async () => {
    const id = uniqueName('token');
    await adapterFor('AccessToken').upsert(id, { jti: id }, 60);
    await adapterFor('RefreshToken').upsert(id, { jti: id }, 60);
    await adapterFor('AccessToken').destroy(id);
    expect(await adapterFor('AccessToken').find(id)).toBeUndefined();
    expect(await adapterFor('RefreshToken').find(id)).toEqual({ jti: id });
  });

  it('revokes by grant id every grant-bound row of that grant and nothing else', async () => {
    const grantId = uniqueName('grant');
    const otherGrant = uniqueName('grant');
    const revoked = [
      ['AccessToken', uniqueName('at')],
      ['RefreshToken', uniqueName('rt')],
      ['AuthorizationCode', uniqueName('ac')],
      ['DeviceCode', uniqueName('dc')],
    ] as const;
    for (const [model, id] of revoked) await adapterFor(model).upsert(id, { jti: id, grantId }, 60);
    const otherToken = uniqueName('at');
    await adapterFor('AccessToken').upsert(otherToken, { jti: otherToken, grantId: otherGrant }, 60);
    // The Grant itself and an Interaction naming the grant are not grant-bound tokens: the
    // provider destroys those on its own (as with its memory adapter).
    await adapterFor('Grant').upsert(grantId, { jti: grantId }, 60);
    const interaction = uniqueName('interaction');
    await adapterFor('Interaction').upsert(interaction, { jti: interaction, grantId }, 60);

    await adapterFor('AccessToken').revokeByGrantId(grantId);

    for (const [model, id] of revoked) expect(await adapterFor(model).find(id)).toBeUndefined();
    expect(await adapterFor('AccessToken').find(otherToken)).toBeDefined();
    expect(await adapterFor('Grant').find(grantId)).toBeDefined();
    expect(await adapterFor('Interaction').find(interaction)).toBeDefined();
  });

  it('serves the Client model from findClient when one is given', async () => {
    const withClients = createAdapterFactory(db, {
      findClient: async (id) => (id === 'billing-agent' ? { client_id: id } : undefined),
    });
    expect(await withClients('Client').find('billing-agent')).toEqual({ client_id: 'billing-agent' });
    expect(await withClients('Client').find('someone-else')).toBeUndefined();
  });

  it('stores a replay detection id once and refuses the second store of a live one', async () => {
    const replay = adapterFor('ReplayDetection');
    const id = uniqueName('jti');
    await replay.upsert(id, { jti: id, iss: 'billing-agent' }, 60);
    const second = replay.upsert(id, { jti: id, iss: 'billing-agent' }, 60);
    await expect(second).rejects.toBeInstanceOf(AdapterError);
    await expect(second).rejects.toMatchObject({ code: 'replay_detected' });
  });

  it('lets a replay detection id be stored again once its row has expired', async () => {
    const replay = adapterFor('ReplayDetection');
    const id = uniqueName('jti');
    await replay.upsert(id, { jti: id }, -1);
    await expect(replay.upsert(id, { jti: id }, 60)).resolves.toBeUndefined();
  });
});
