// A whole reins started in the test's process (src/runtime/start.ts), with one agent granted GETs
// to a local upstream, and the two things tests do with it: get the agent's token, and send a GET
// through the gateway as an agent's HTTP client would (absolute form, Proxy-Authorization).
import { mkdir, writeFile } from 'node:fs/promises';
import http from 'node:http';
import { join } from 'node:path';
import pino from 'pino';
import { loadConfig } from '../../src/config/load.ts';
import { type Running, start } from '../../src/runtime/start.ts';

export interface AgentPolicy {
  readonly tenant: string;
  readonly agent: string;
  readonly secret: string;
  /** The upstream every GET may reach: `GET http://127.0.0.1:<port>/`. */
  readonly upstreamPort: number;
}

/** The environment variable the agent's secret is read from (the policy names it). */
function secretEnv(policy: AgentPolicy): string {
  return `${policy.tenant}_${policy.agent}_SECRET`.toUpperCase().replace(/[^A-Z0-9_]/g, '_');
}

/**
 * Starts reins with a policy directory (in `work`) holding `policy`'s agent; `env` adds settings
 * (DATABASE_URL, REINS_DATA_DIR, REINS_GATEWAY_WORKERS, …). Every port is the kernel's choice and
 * 127.0.0.1 on the upstream's port is opened to the gateway.
 */
export async function startWithAgent(
  work: string,
  policy: AgentPolicy,
  env: Readonly<Record<string, string>>,
): Promise<Running> {
  const policies = join(work, 'policies');
  await mkdir(policies, { recursive: true });
  await writeFile(
    join(policies, `${policy.tenant}.yaml`),
    [
      `tenant: ${policy.tenant}`,
      'agents:',
      `  ${policy.agent}:`,
      `    auth: { method: client_secret_basic, secret_env: ${secretEnv(policy)} }`,
      `    egress: ["GET http://127.0.0.1:${policy.upstreamPort}/"]`,
      '',
    ].join('\n'),
  );
  // The server reads secret_env from its own environment: this process's.
  process.env[secretEnv(policy)] = policy.secret;
  const config = loadConfig(
    {},
    {
      DATABASE_URL: '',
      REINS_DATA_DIR: 'memory',
      REINS_POLICIES: policies,
      REINS_HOST: '127.0.0.1',
      REINS_PORT: '0',
      REINS_GATEWAY_PORT: '0',
      REINS_ADMIN_PORT: '0',
      REINS_GATEWAY_ALLOW_PRIVATE: '127.0.0.1/32',
      ...env,
    },
  );
  return start(config, pino({ level: 'silent' }));
}

/** A client_credentials token of `policy`'s agent. */
export async function agentToken(running: Running, policy: AgentPolicy): Promise<string> {
  const response = await fetch(`${running.auth.url}/token`, {
    method: 'POST',
    headers: { authorization: `Basic ${Buffer.from(`${policy.agent}:${policy.secret}`).toString('base64')}` },
    body: new URLSearchParams({ grant_type: 'client_credentials' }),
  });
  const body = (await response.json()) as { access_token?: string };
  if (!body.access_token) throw new Error(`no token: ${JSON.stringify(body)}`);
  return body.access_token;
}

export interface Answer {
  /** 0: the connection was cut before an answer (ECONNRESET). */
  readonly status: number;
  readonly reason: string | undefined;
}

/**
 * GET `path` of the upstream through the gateway. `agent` keeps connections alive between calls;
 * without one, each call has a connection of its own (the kernel picks the gateway thread).
 */
export function getThrough(
  gatewayUrl: string,
  upstreamPort: number,
  path: string,
  bearer: string,
  agent?: http.Agent,
): Promise<Answer> {
  const gateway = new URL(gatewayUrl);
  return new Promise((done, fail) => {
    const req = http.request({
      host: gateway.hostname,
      port: gateway.port,
      method: 'GET',
      path: `http://127.0.0.1:${upstreamPort}${path}`,
      headers: {
        host: `127.0.0.1:${upstreamPort}`,
        'proxy-authorization': `Bearer ${bearer}`,
        ...(agent === undefined ? { connection: 'close' } : {}),
      },
      agent: agent ?? false,
    });
    req.on('response', (res) => {
      res.resume();
      res.on('end', () =>
        done({ status: res.statusCode ?? 0, reason: res.headers['x-reins-reason'] as string }),
      );
      res.on('error', () => done({ status: 0, reason: 'cut' }));
    });
    req.on('error', (err: NodeJS.ErrnoException) =>
      err.code === 'ECONNRESET' ? done({ status: 0, reason: 'cut' }) : fail(err),
    );
    req.end();
  });
}
