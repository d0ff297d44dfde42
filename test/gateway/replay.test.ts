// Replay (replay.ts): recorded requests judged under the applied and the planned policy by the
// gateway's own decide(); what changes is counted per agent and destination. One row per kind of
// change a plan can make.
import { describe, expect, it } from 'vitest';
import { formatReplay, type ReplayedRow, replayDecisions } from '../../src/gateway/replay.ts';
import type { PolicyModel } from '../../src/policy/model.ts';
import { validate, yaml } from '../policy/support.ts';

function model(...lines: string[]): PolicyModel {
  const result = validate({ 'acme.yaml': yaml('tenant: acme', ...lines) });
  if (result.model === null) throw new Error(JSON.stringify(result.diagnostics));
  return result.model;
}

const agent = (egress: string, extra: string[] = []) => [
  'agents:',
  '  worker:',
  '    auth: { method: client_secret_basic, secret_env: W }',
  `    egress: ${egress}`,
  ...extra,
];

function row(method: string, url: string, agentName: string | null = 'worker'): ReplayedRow {
  if (method === 'CONNECT') {
    const [host, port] = url.split(':');
    return {
      tenant: 'acme',
      agent: agentName,
      method,
      scheme: null,
      host: host ?? '',
      port: Number(port),
      path: null,
    };
  }
  const u = new URL(url);
  return {
    tenant: agentName === null ? null : 'acme',
    agent: agentName,
    method,
    scheme: u.protocol.slice(0, -1),
    host: u.hostname.replace(/^\[|\]$/g, ''),
    port: u.port === '' ? null : Number(u.port),
    path: u.pathname,
  };
}

const APPLIED = model(...agent('["GET,POST https://api.example.com/v1/", "https://files.example.com/"]'));

describe('replaying decisions under a planned policy', () => {
  it.each([
    {
      name: 'a narrower path refuses the requests outside it',
      planned: model(...agent('["GET,POST https://api.example.com/v1/keep/", "https://files.example.com/"]')),
      rows: [
        row('GET', 'https://api.example.com/v1/keep/1'),
        row('GET', 'https://api.example.com/v1/drop/1'),
      ],
      refused: [{ destination: 'GET https://api.example.com:443', requests: 1, paths: ['/v1/drop/1'] }],
      allowed: [],
    },
    {
      name: 'a method taken away refuses its requests only',
      planned: model(...agent('["GET https://api.example.com/v1/", "https://files.example.com/"]')),
      rows: [
        row('GET', 'https://api.example.com/v1/a'),
        row('POST', 'https://api.example.com/v1/a'),
        row('POST', 'https://api.example.com/v1/b'),
      ],
      refused: [{ destination: 'POST https://api.example.com:443', requests: 2, paths: ['/v1/a', '/v1/b'] }],
      allowed: [],
    },
    {
      name: 'a wider grant allows what was refused',
      planned: model(...agent('["GET,POST https://api.example.com/", "https://files.example.com/"]')),
      rows: [row('GET', 'https://api.example.com/v2/x'), row('GET', 'https://api.example.com/v1/x')],
      refused: [],
      allowed: [{ destination: 'GET https://api.example.com:443', requests: 1, paths: ['/v2/x'] }],
    },
    {
      name: 'a ceiling cuts what the agent may reach',
      planned: model(
        'settings:',
        '  egress_ceiling: ["https://api.example.com/"]',
        ...agent('["GET,POST https://api.example.com/v1/", "https://files.example.com/"]'),
      ),
      rows: [row('GET', 'https://files.example.com/doc'), row('CONNECT', 'files.example.com:443')],
      refused: [
        { destination: 'CONNECT https://files.example.com:443', requests: 1, paths: [] },
        { destination: 'GET https://files.example.com:443', requests: 1, paths: ['/doc'] },
      ],
      allowed: [],
    },
    {
      name: 'an agent removed from the policy is refused everything',
      planned: model(
        'agents:',
        '  other:',
        '    auth: { method: client_secret_basic, secret_env: W }',
        '    egress: ["https://files.example.com/"]',
      ),
      rows: [row('GET', 'https://files.example.com/a'), row('GET', 'https://files.example.com/b')],
      refused: [{ destination: 'GET https://files.example.com:443', requests: 2, paths: ['/a', '/b'] }],
      allowed: [],
    },
  ])('$name', async ({ planned, rows, refused, allowed }) => {
    const report = await replayDecisions(rows, APPLIED, planned);
    expect(report.judged).toBe(rows.length);
    expect(report.agents).toEqual([
      { tenant: 'acme', agent: 'worker', newlyRefused: refused, newlyAllowed: allowed },
    ]);
  });

  it('leaves out what the policy does not decide: requests without an agent, and address refusals', async () => {
    const planned = model(
      ...agent('["GET,POST https://api.example.com/v1/", "https://files.example.com/", "http://10.0.0.5/"]'),
    );
    const rows = [
      row('GET', 'https://api.example.com/v1/x', null),
      // Granted by the planned policy; whether the address may be reached is the operator's openings'.
      row('GET', 'http://10.0.0.5/internal'),
    ];
    const report = await replayDecisions(rows, APPLIED, planned);
    expect(report.judged).toBe(1);
    expect(report.agents).toEqual([
      {
        tenant: 'acme',
        agent: 'worker',
        newlyRefused: [],
        newlyAllowed: [{ destination: 'GET http://10.0.0.5:80', requests: 1, paths: ['/internal'] }],
      },
    ]);
  });

  it('says so when nothing would change, and prints each change with its count', async () => {
    const same = await replayDecisions([row('GET', 'https://api.example.com/v1/x')], APPLIED, APPLIED);
    expect(formatReplay(same, '24h')).toBe(
      'Replay of the last 24h: 1 recorded requests judged under both policies.\nNo request would be decided differently.\n',
    );
    const planned = model(...agent('["https://files.example.com/"]'));
    const changed = await replayDecisions([row('POST', 'https://api.example.com/v1/x')], APPLIED, planned);
    expect(formatReplay(changed, '1h')).toBe(
      'Replay of the last 1h: 1 recorded requests judged under both policies.\n\n' +
        'tenant acme, agent worker:\n' +
        '  - would be refused: POST https://api.example.com:443  1 requests (e.g. /v1/x)\n',
    );
  });
});
