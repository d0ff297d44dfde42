// A start that fails part-way stops exactly what it had started, last first (src/runtime/start.ts):
// the listeners already up give their ports back, and the embedded database releases its data
// directory's lock, so that the operator's second try — with the port fixed — just works.
import { once } from 'node:events';
import { mkdtemp, rm, stat } from 'node:fs/promises';
import { connect, createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import pino from 'pino';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config/load.ts';
import type { Config } from '../../src/config/settings.ts';
import { start, startGatewayOnly } from '../../src/runtime/start.ts';

const POLICIES = fileURLToPath(new URL('../../policies', import.meta.url));
const silent = pino({ level: 'silent' });
// Each test starts twice on an embedded database in a directory (created, migrated, policies
// applied): seconds each on a busy machine.
const TWO_STARTS_MS = 90_000;

/** A listener the test holds on a port of the kernel's choosing, as another program would. */
async function hold(): Promise<Server> {
  const server = createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return server;
}

function portOf(server: Server): number {
  const address = server.address();
  if (address === null || typeof address === 'string') throw new Error('not listening on a port');
  return address.port;
}

/** A port nothing listens on now: taken by the kernel's choice, then given back. */
async function freePort(): Promise<number> {
  const server = await hold();
  const port = portOf(server);
  await close(server);
  return port;
}

function close(server: Server): Promise<void> {
  return new Promise((resolve) => server.close(() => resolve()));
}

/** What dialling the port gives: 'connected', or the error code ('ECONNREFUSED'). */
function dial(port: number): Promise<string> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1');
    socket.once('connect', () => {
      socket.destroy();
      resolve('connected');
    });
    socket.once('error', (err: NodeJS.ErrnoException) => resolve(err.code ?? err.message));
  });
}

/** Whether a listener can take `port` now; it is given back at once. */
async function canListen(port: number): Promise<boolean> {
  const server = createServer();
  server.listen(port, '127.0.0.1');
  try {
    await once(server, 'listening');
  } catch {
    return false;
  }
  await close(server);
  return true;
}

async function lockFileExists(dir: string): Promise<boolean> {
  return stat(join(dir, 'reins.lock')).then(
    () => true,
    () => false,
  );
}

let dataDir: string;
let held: Server[];
beforeEach(async () => {
  dataDir = await mkdtemp(join(tmpdir(), 'reins-start-'));
  held = [];
});
afterEach(async () => {
  await Promise.all(held.map(close));
  await rm(dataDir, { recursive: true, force: true });
});

/** Settings on the given ports, the embedded database in this test's data directory. */
function settings(ports: { port: number; gatewayPort: number; adminPort: number }): Config {
  return loadConfig(
    {},
    {
      DATABASE_URL: '',
      REINS_DATA_DIR: dataDir,
      REINS_POLICIES: POLICIES,
      REINS_HOST: '127.0.0.1',
      REINS_PORT: String(ports.port),
      REINS_GATEWAY_PORT: String(ports.gatewayPort),
      REINS_ADMIN_PORT: String(ports.adminPort),
    },
  );
}

/** A port held by the test for the whole test. */
async function taken(): Promise<number> {
  const server = await hold();
  held.push(server);
  return portOf(server);
}

describe('a serve start that fails part-way', () => {
  it(
    'stops the authorization server, the gateway and the database when the admin port is taken',
    async () => {
      const ports = { port: await freePort(), gatewayPort: await freePort(), adminPort: await taken() };

      await expect(start(settings(ports), silent)).rejects.toMatchObject({
        code: 'port_in_use',
        message: expect.stringContaining(`port ${ports.adminPort} is already in use`),
      });

      expect(await dial(ports.port)).toBe('ECONNREFUSED');
      expect(await dial(ports.gatewayPort)).toBe('ECONNREFUSED');
      expect(await canListen(ports.port)).toBe(true);
      expect(await canListen(ports.gatewayPort)).toBe(true);
      expect(await lockFileExists(dataDir)).toBe(false);

      // The second try, admin port moved: same data directory, same ports for the other two.
      const running = await start(settings({ ...ports, adminPort: 0 }), silent);
      try {
        expect(running.auth.url).toBe(`http://127.0.0.1:${ports.port}`);
        expect(running.gateway.url).toBe(`http://127.0.0.1:${ports.gatewayPort}`);
        expect((await fetch(`${running.admin.url}/readyz`)).status).toBe(200);
      } finally {
        await running.stop();
      }
      expect(await lockFileExists(dataDir)).toBe(false);
    },
    TWO_STARTS_MS,
  );

  it(
    'stops the authorization server and the database when the gateway port is taken',
    async () => {
      const ports = { port: await freePort(), gatewayPort: await taken(), adminPort: await freePort() };

      await expect(start(settings(ports), silent)).rejects.toMatchObject({
        code: 'port_in_use',
        message: expect.stringContaining('REINS_GATEWAY_PORT (--gateway-port)'),
      });

      expect(await dial(ports.port)).toBe('ECONNREFUSED');
      expect(await dial(ports.adminPort)).toBe('ECONNREFUSED');
      expect(await canListen(ports.port)).toBe(true);
      expect(await lockFileExists(dataDir)).toBe(false);

      const running = await start(settings({ ...ports, gatewayPort: 0 }), silent);
      await running.stop();
    },
    TWO_STARTS_MS,
  );
});

describe('a gateway-only start that fails part-way', () => {
  it(
    'stops the gateway and the database when the admin port is taken',
    async () => {
      const ports = { port: await freePort(), gatewayPort: await freePort(), adminPort: await taken() };

      await expect(startGatewayOnly(settings(ports), silent)).rejects.toMatchObject({
        code: 'port_in_use',
        message: expect.stringContaining('REINS_ADMIN_PORT (--admin-port)'),
      });

      expect(await dial(ports.gatewayPort)).toBe('ECONNREFUSED');
      expect(await canListen(ports.gatewayPort)).toBe(true);
      expect(await lockFileExists(dataDir)).toBe(false);

      const running = await startGatewayOnly(settings({ ...ports, adminPort: 0 }), silent);
      try {
        expect(running.gateway.url).toBe(`http://127.0.0.1:${ports.gatewayPort}`);
        // Nothing applied a policy to this database yet: alive, not ready.
        expect((await fetch(`${running.admin.url}/livez`)).status).toBe(200);
      } finally {
        await running.stop();
      }
      expect(await lockFileExists(dataDir)).toBe(false);
    },
    TWO_STARTS_MS,
  );
});
