// Fetching the interception CA bundle from a stand-in issuer that records every request: where
// the bundle is looked for (discovery, then <issuer>/ca.pem), and every answer that must not
// become a trusted CA — another issuer's metadata, a leaf certificate, no certificate, too much,
// a redirect, an error.
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { fetchInterceptionCa } from '../../src/agent-run/ca-fetch.ts';
import { makeCa } from '../gateway/tls-support.ts';

type Handler = (req: IncomingMessage, res: ServerResponse) => void;

describe('fetchInterceptionCa', () => {
  let server: http.Server;
  let issuer: string;
  const seen: string[] = [];
  let routes: Record<string, Handler> = {};
  let caPem: string;
  let otherCaPem: string;
  let leafPem: string;

  beforeAll(async () => {
    const ca = await makeCa('reins interception CA test');
    caPem = ca.certPem;
    otherCaPem = (await makeCa('replaced CA')).certPem;
    leafPem = (await ca.issue('api.test')).certPem;
    server = http.createServer((req, res) => {
      seen.push(req.url ?? '');
      const handler = routes[req.url ?? ''];
      if (handler === undefined) res.writeHead(404).end();
      else handler(req, res);
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    issuer = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  beforeEach(() => {
    seen.length = 0;
    routes = {};
  });
  afterAll(async () => {
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });

  const json =
    (status: number, body: unknown): Handler =>
    (_req, res) => {
      res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body));
    };
  const pem =
    (text: string): Handler =>
    (_req, res) => {
      res.writeHead(200, { 'content-type': 'application/x-pem-file' }).end(text);
    };
  const metadata = (extra: Record<string, unknown> = {}) =>
    json(200, { issuer, token_endpoint: `${issuer}/token`, ...extra });

  it('follows reins_interception_ca_uri from the issuer’s metadata', async () => {
    routes['/.well-known/oauth-authorization-server'] = metadata({
      reins_interception_ca_uri: `${issuer}/elsewhere/bundle.pem`,
    });
    routes['/elsewhere/bundle.pem'] = pem(`${caPem}${otherCaPem}`);
    const fetched = await fetchInterceptionCa(issuer);
    expect(fetched).toEqual({
      url: `${issuer}/elsewhere/bundle.pem`,
      pem: `${caPem.trim()}\n${otherCaPem.trim()}\n`,
      count: 2,
    });
    expect(seen).toEqual(['/.well-known/oauth-authorization-server', '/elsewhere/bundle.pem']);
  });

  it('falls back to <issuer>/ca.pem when the issuer publishes no metadata', async () => {
    routes['/ca.pem'] = pem(caPem);
    const fetched = await fetchInterceptionCa(issuer);
    expect(fetched).toMatchObject({ url: `${issuer}/ca.pem`, count: 1 });
    expect(seen).toEqual(['/.well-known/oauth-authorization-server', '/ca.pem']);
  });

  it('refuses metadata that names another issuer, and fetches no bundle', async () => {
    routes['/.well-known/oauth-authorization-server'] = json(200, {
      issuer: 'https://attacker.example',
      reins_interception_ca_uri: `${issuer}/ca.pem`,
    });
    routes['/ca.pem'] = pem(caPem);
    await expect(fetchInterceptionCa(issuer)).rejects.toMatchObject({ code: 'issuer_mismatch' });
    expect(seen).toEqual(['/.well-known/oauth-authorization-server']);
  });

  it('refuses a bundle that holds a certificate that is not a CA (a leaf would be trusted as a root)', async () => {
    routes['/ca.pem'] = pem(`${caPem}${leafPem}`);
    await expect(fetchInterceptionCa(issuer)).rejects.toMatchObject({
      code: 'ca_invalid',
      message: expect.stringContaining('is not a CA (CN=api.test)'),
    });
  });

  it.each([
    ['a page without certificates', () => '<html>reins</html>'],
    ['a damaged certificate', () => '-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n'],
    ['more than 256 KiB, even after a good CA', () => `${caPem}${'#'.repeat(300 * 1024)}`],
  ])('refuses %s', async (_name, text) => {
    routes['/ca.pem'] = pem(text());
    await expect(fetchInterceptionCa(issuer)).rejects.toMatchObject({ code: 'ca_invalid' });
  });

  it('says what the issuer said when it has no CA (404 ca_missing)', async () => {
    routes['/ca.pem'] = json(404, {
      error: 'ca_missing',
      error_description: 'no interception CA yet: the gateway creates one at first start',
    });
    await expect(fetchInterceptionCa(issuer)).rejects.toMatchObject({
      code: 'ca_unavailable',
      message: `${issuer}/ca.pem answered 404: no interception CA yet: the gateway creates one at first start`,
    });
  });

  it('never follows a redirect to somewhere else', async () => {
    routes['/ca.pem'] = (_req, res) => {
      res.writeHead(302, { location: `${issuer}/planted.pem` }).end();
    };
    routes['/planted.pem'] = pem(caPem);
    await expect(fetchInterceptionCa(issuer)).rejects.toMatchObject({ code: 'issuer_unreachable' });
    expect(seen).not.toContain('/planted.pem');
  });

  it('refuses a reins_interception_ca_uri that is not http(s)', async () => {
    routes['/.well-known/oauth-authorization-server'] = metadata({
      reins_interception_ca_uri: 'file:///etc/ssl/certs/ca-certificates.crt',
    });
    await expect(fetchInterceptionCa(issuer)).rejects.toMatchObject({ code: 'ca_invalid' });
    expect(seen).toEqual(['/.well-known/oauth-authorization-server']);
  });
});
