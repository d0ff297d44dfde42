// Client credentials against a stand-in issuer that records what it was sent: discovery, the
// client authentication (client_secret_basic, private_key_jwt with each key type), the
// lifetime read from the answer, and every way the issuer can say no.
import { generateKeyPairSync } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { decodeProtectedHeader, exportPKCS8, generateKeyPair, jwtVerify } from 'jose';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { loadAssertionSigner } from '../../src/agent-run/client-assertion.ts';
import {
  type ClientAuthentication,
  clientCredentials,
  discoverTokenEndpoint,
} from '../../src/agent-run/token-endpoint.ts';

interface Seen {
  readonly method: string;
  readonly path: string;
  readonly headers: IncomingMessage['headers'];
  readonly form: URLSearchParams;
}

type Handler = (req: IncomingMessage, res: ServerResponse, body: string) => void;

/** An issuer whose answers each test sets; it records every request. */
async function startFakeIssuer() {
  const seen: Seen[] = [];
  const issuer = {
    url: '',
    seen,
    metadata: undefined as Handler | undefined,
    token: undefined as Handler | undefined,
    close: async () => {},
  };
  const server = http.createServer((req, res) => {
    let body = '';
    req.setEncoding('utf8').on('data', (chunk: string) => {
      body += chunk;
    });
    req.on('end', () => {
      const path = req.url ?? '';
      seen.push({ method: req.method ?? '', path, headers: req.headers, form: new URLSearchParams(body) });
      const handler = path.startsWith('/.well-known/') ? issuer.metadata : issuer.token;
      if (handler === undefined) {
        res.writeHead(404).end();
        return;
      }
      handler(req, res, body);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  issuer.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  issuer.close = async () => {
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  };
  return issuer;
}

const json =
  (status: number, body: unknown): Handler =>
  (_req, res) => {
    res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body));
  };

/** An unsigned JWT with these claims: enough for a client that only reads `exp`. */
function jwt(claims: Record<string, unknown>): string {
  const part = (value: unknown) => Buffer.from(JSON.stringify(value)).toString('base64url');
  return `${part({ alg: 'ES256', typ: 'at+jwt' })}.${part(claims)}.c2ln`;
}

const TOKEN = jwt({ sub: 'worker', exp: 2_000_000_000 });

describe('client credentials', () => {
  let issuer: Awaited<ReturnType<typeof startFakeIssuer>>;
  let dir: string;
  const basic: ClientAuthentication = {
    method: 'client_secret_basic',
    clientId: 'worker',
    secret: 's:cret%+é',
  };
  beforeAll(async () => {
    issuer = await startFakeIssuer();
    dir = await mkdtemp(join(tmpdir(), 'reins-token-endpoint-'));
  });
  afterAll(async () => {
    await issuer.close();
    await rm(dir, { recursive: true, force: true });
  });
  beforeEach(() => {
    issuer.seen.length = 0;
    issuer.metadata = json(200, { issuer: issuer.url, token_endpoint: `${issuer.url}/oauth2/token` });
    issuer.token = json(200, { access_token: TOKEN, token_type: 'Bearer', expires_in: 300 });
  });

  it('finds the token endpoint by discovery and asks with client_secret_basic', async () => {
    const obtain = clientCredentials({
      issuer: issuer.url,
      auth: basic,
      scope: 'egress:payments',
      now: () => 5_000,
    });
    expect(await obtain()).toEqual({ token: TOKEN, expiresAt: 5_000 + 300_000 });
    expect(issuer.seen.map((s) => `${s.method} ${s.path}`)).toEqual([
      'GET /.well-known/oauth-authorization-server',
      'POST /oauth2/token',
    ]);
    const post = issuer.seen[1];
    // RFC 6749 §2.3.1: id and secret form-encoded, then base64.
    const credentials = Buffer.from(
      String(post?.headers.authorization).replace(/^Basic /, ''),
      'base64',
    ).toString();
    expect(credentials).toBe(`worker:${encodeURIComponent('s:cret%+é')}`);
    expect(Object.fromEntries(post?.form ?? [])).toEqual({
      grant_type: 'client_credentials',
      scope: 'egress:payments',
    });
  });

  it('sends the secret in the form body, and no Authorization, for an agent declared client_secret_post', async () => {
    const obtain = clientCredentials({
      issuer: issuer.url,
      auth: { method: 'client_secret_post', clientId: 'worker', secret: 's:cret%+é' },
      now: () => 5_000,
    });
    expect(await obtain()).toEqual({ token: TOKEN, expiresAt: 5_000 + 300_000 });
    const post = issuer.seen[1];
    expect(post?.headers.authorization).toBeUndefined();
    expect(Object.fromEntries(post?.form ?? [])).toEqual({
      grant_type: 'client_credentials',
      client_id: 'worker',
      client_secret: 's:cret%+é',
    });
  });

  it('discovers once, then asks the token endpoint alone', async () => {
    const obtain = clientCredentials({ issuer: issuer.url, auth: basic });
    await obtain();
    await obtain();
    expect(issuer.seen.map((s) => s.path)).toEqual([
      '/.well-known/oauth-authorization-server',
      '/oauth2/token',
      '/oauth2/token',
    ]);
  });

  it('falls back to <issuer>/token when the issuer publishes no metadata', async () => {
    issuer.metadata = undefined;
    await clientCredentials({ issuer: issuer.url, auth: basic })();
    expect(issuer.seen.at(-1)?.path).toBe('/token');
  });

  it('puts the well-known segment before the issuer’s path (RFC 8414 §3.1)', async () => {
    issuer.metadata = json(200, {
      issuer: `${issuer.url}/tenant-a`,
      token_endpoint: `${issuer.url}/tenant-a/token`,
    });
    expect(await discoverTokenEndpoint(`${issuer.url}/tenant-a`)).toBe(`${issuer.url}/tenant-a/token`);
    expect(issuer.seen[0]?.path).toBe('/.well-known/oauth-authorization-server/tenant-a');
  });

  it('refuses metadata that names another issuer (RFC 8414 §3.3)', async () => {
    issuer.metadata = json(200, {
      issuer: 'https://evil.example',
      token_endpoint: 'https://evil.example/token',
    });
    await expect(clientCredentials({ issuer: issuer.url, auth: basic })()).rejects.toMatchObject({
      code: 'issuer_mismatch',
    });
    expect(issuer.seen.map((s) => s.method)).toEqual(['GET']);
  });

  it('reads the lifetime from the token’s exp when the answer has no expires_in', async () => {
    issuer.token = json(200, { access_token: TOKEN, token_type: 'Bearer' });
    expect(await clientCredentials({ issuer: issuer.url, auth: basic })()).toEqual({
      token: TOKEN,
      expiresAt: 2_000_000_000_000,
    });
  });

  it.each([
    [
      'an OAuth error, with its description',
      json(401, { error: 'invalid_client', error_description: 'client authentication failed' }),
      'token_refused',
      'the token endpoint refused the agent worker: invalid_client (client authentication failed)',
    ],
    [
      'an answer that is not JSON',
      (_req: IncomingMessage, res: ServerResponse) => {
        res.writeHead(500).end('<html>oops</html>');
      },
      'token_response_invalid',
      'the token endpoint answered 500',
    ],
    [
      'a 200 without an access_token',
      json(200, { token_type: 'Bearer' }),
      'token_response_invalid',
      'the token endpoint answered without an access_token',
    ],
    [
      'a token that is not a Bearer token',
      json(200, { access_token: TOKEN, token_type: 'DPoP', expires_in: 300 }),
      'token_response_invalid',
      'the token endpoint issued a DPoP token; the gateway takes Bearer tokens',
    ],
    [
      'a token without a lifetime',
      json(200, { access_token: 'opaque', token_type: 'Bearer' }),
      'token_response_invalid',
      'the token endpoint did not say when the token expires',
    ],
    [
      'control characters in the description (printed as spaces)',
      json(400, { error: 'invalid_scope', error_description: 'bad\u001b[31m scope' }),
      'token_refused',
      'the token endpoint refused the agent worker: invalid_scope (bad [31m scope)',
    ],
  ])('reports %s', async (_name, handler, code, message) => {
    issuer.token = handler as Handler;
    await expect(clientCredentials({ issuer: issuer.url, auth: basic })()).rejects.toMatchObject({
      code,
      message,
    });
  });

  it('reports an issuer that cannot be reached, and tries discovery again next time', async () => {
    const closed = http.createServer();
    await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve));
    const port = (closed.address() as AddressInfo).port;
    await new Promise<void>((resolve) => closed.close(() => resolve()));
    const obtain = clientCredentials({ issuer: `http://127.0.0.1:${port}`, auth: basic, timeoutMs: 2_000 });
    const refused = {
      code: 'issuer_unreachable',
      message: `cannot reach http://127.0.0.1:${port}: ECONNREFUSED`,
    };
    await expect(obtain()).rejects.toMatchObject(refused);
    await expect(obtain()).rejects.toMatchObject(refused);
  });

  describe('private_key_jwt', () => {
    it.each([
      ['ES256', {}],
      ['ES384', {}],
      ['EdDSA', { crv: 'Ed25519' }],
      ['RS256', { modulusLength: 2048 }],
    ])('signs an RFC 7523 assertion with a %s key', async (alg, options) => {
      const { publicKey, privateKey } = await generateKeyPair(alg, { extractable: true, ...options });
      const file = join(dir, `${alg}.pem`);
      await writeFile(file, await exportPKCS8(privateKey));
      const signer = await loadAssertionSigner(file, 'research-agent', alg === 'ES256' ? 'k1' : undefined);
      expect(signer.alg).toBe(alg);
      const obtain = clientCredentials({
        issuer: issuer.url,
        auth: { method: 'private_key_jwt', clientId: 'research-agent', assertion: (aud) => signer.sign(aud) },
      });
      await obtain();
      await obtain();
      const posts = issuer.seen.filter((s) => s.method === 'POST');
      expect(posts).toHaveLength(2);
      const jtis = new Set<unknown>();
      for (const post of posts) {
        expect(post.headers.authorization).toBeUndefined();
        expect(post.form.get('client_id')).toBe('research-agent');
        expect(post.form.get('client_assertion_type')).toBe(
          'urn:ietf:params:oauth:client-assertion-type:jwt-bearer',
        );
        const assertion = String(post.form.get('client_assertion'));
        const header = decodeProtectedHeader(assertion);
        expect(header).toEqual(alg === 'ES256' ? { alg, kid: 'k1' } : { alg });
        const { payload } = await jwtVerify(assertion, publicKey, {
          issuer: 'research-agent',
          subject: 'research-agent',
          audience: `${issuer.url}/oauth2/token`,
        });
        expect(Number(payload.exp) - Number(payload.iat)).toBeLessThanOrEqual(60);
        jtis.add(payload.jti);
      }
      expect(jtis.size).toBe(2);
    });

    it('reads SEC1 and PKCS#1 PEMs as well as PKCS#8', async () => {
      const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({
        type: 'sec1',
        format: 'pem',
      });
      const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({
        type: 'pkcs1',
        format: 'pem',
      });
      await writeFile(join(dir, 'sec1.pem'), ec);
      await writeFile(join(dir, 'pkcs1.pem'), rsa);
      expect((await loadAssertionSigner(join(dir, 'sec1.pem'), 'a', undefined)).alg).toBe('ES256');
      expect((await loadAssertionSigner(join(dir, 'pkcs1.pem'), 'a', undefined)).alg).toBe('RS256');
    });

    it.each([
      [
        'a missing file',
        async () => join(dir, 'nope.pem'),
        'key_unreadable',
        /cannot read the key .*nope\.pem: ENOENT/,
      ],
      [
        'an encrypted key',
        async () => {
          const file = join(dir, 'encrypted.pem');
          const { privateKey } = generateKeyPairSync('ec', {
            namedCurve: 'P-256',
            privateKeyEncoding: { type: 'pkcs8', format: 'pem', cipher: 'aes-256-cbc', passphrase: 'pw' },
            publicKeyEncoding: { type: 'spki', format: 'pem' },
          });
          await writeFile(file, privateKey);
          return file;
        },
        'key_unsupported',
        /it is encrypted/,
      ],
      [
        'a public key',
        async () => {
          const file = join(dir, 'public.pem');
          const { publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
          await writeFile(file, publicKey.export({ type: 'spki', format: 'pem' }));
          return file;
        },
        'key_unsupported',
        /not a PEM private key/,
      ],
      [
        'a curve the server does not take (secp256k1)',
        async () => {
          const file = join(dir, 'k1.pem');
          const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'secp256k1' });
          await writeFile(file, privateKey.export({ type: 'pkcs8', format: 'pem' }));
          return file;
        },
        'key_unsupported',
        /use a P-256, P-384, P-521, Ed25519 or RSA key/,
      ],
    ])('refuses %s', async (_name, makeFile, code, message) => {
      const file = await makeFile();
      await expect(loadAssertionSigner(file, 'a', undefined)).rejects.toMatchObject({
        code,
        message: expect.stringMatching(message),
      });
    });
  });
});
