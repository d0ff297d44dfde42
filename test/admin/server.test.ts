// The admin listener's probes: each means one thing (docs/configuration.md, "Health").
import { Registry } from 'prom-client';
import { afterEach, describe, expect, it } from 'vitest';
import { type AdminServer, startAdmin } from '../../src/admin/server.ts';

const servers: AdminServer[] = [];
afterEach(async () => {
  for (const server of servers.splice(0)) await server.close();
});

async function admin(databaseUp: boolean): Promise<string> {
  const server = await startAdmin({
    host: '127.0.0.1',
    port: 0,
    registry: new Registry(),
    checks: {
      database: async () => {
        if (!databaseUp) throw new Error('connection refused');
        return { ok: true };
      },
    },
  });
  servers.push(server);
  return server.url;
}

describe('the admin probes', () => {
  it('while the database is down: /livez 200, /readyz 503 not_ready, /healthz 200 reporting degraded', async () => {
    const url = await admin(false);
    expect((await fetch(`${url}/livez`)).status).toBe(200);
    const ready = await fetch(`${url}/readyz`);
    expect(ready.status).toBe(503);
    expect(await ready.json()).toMatchObject({ status: 'not_ready', ok: false });
    const health = await fetch(`${url}/healthz`);
    expect(health.status).toBe(200);
    expect(await health.json()).toEqual({
      status: 'degraded',
      ok: false,
      checks: { database: { ok: false, detail: 'connection refused' } },
    });
  });

  it('with the database up, all three answer 200', async () => {
    const url = await admin(true);
    for (const path of ['/livez', '/readyz', '/healthz'])
      expect((await fetch(`${url}${path}`)).status).toBe(200);
  });

  it('a lone gateway has no admin API: /admin/v1/ is 404', async () => {
    const url = await admin(true);
    expect((await fetch(`${url}/admin/v1/audit/last`)).status).toBe(404);
  });
});
