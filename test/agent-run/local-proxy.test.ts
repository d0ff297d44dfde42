// reins run's local proxy against a stand-in gateway that records what it was sent: the token
// replaces the client's credential, the target and the client's headers go on unchanged,
// bodies stream intact, CONNECT is relayed byte for byte, and clients without this run's
// credential are turned away before the gateway hears anything.
import { createHash, randomBytes } from 'node:crypto';
import http, { type IncomingMessage } from 'node:http';
import net, { type AddressInfo, type Socket } from 'node:net';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { AgentRunError } from '../../src/agent-run/errors.ts';
import { type LocalProxy, startLocalProxy } from '../../src/agent-run/local-proxy.ts';

interface Received {
  readonly method: string;
  readonly url: string;
  readonly rawHeaders: string[];
  readonly bodySha256: string;
  readonly bodyBytes: number;
}

interface Tunnel {
  readonly target: string;
  readonly rawHeaders: string[];
  /** Everything the gateway read on the tunnel after its 200. */
  received: string;
}

/** Answers proxy requests with their body, and CONNECT with 200 (or 403 for denied.test). */
async function startFakeGateway() {
  const requests: Received[] = [];
  const tunnels: Tunnel[] = [];
  let connections = 0;
  // Like the real gateway: the absolute-form target names the host; Host may be absent.
  const server = http.createServer({ requireHostHeader: false }, (req: IncomingMessage, res) => {
    const hash = createHash('sha256');
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => {
      hash.update(chunk);
      chunks.push(chunk);
    });
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      requests.push({
        method: req.method ?? '',
        url: req.url ?? '',
        rawHeaders: req.rawHeaders,
        bodySha256: hash.digest('hex'),
        bodyBytes: body.length,
      });
      res.writeHead(200, { 'content-type': 'application/octet-stream', 'x-gateway': 'fake' });
      res.end(body);
    });
  });
  server.on('connection', () => {
    connections++;
  });
  server.on('connect', (req: IncomingMessage, socket: Socket, head: Buffer) => {
    const tunnel: Tunnel = { target: req.url ?? '', rawHeaders: req.rawHeaders, received: head.toString() };
    tunnels.push(tunnel);
    if (tunnel.target.startsWith('denied.test')) {
      const body = JSON.stringify({ error: 'egress_denied', reason: 'no_matching_rule' });
      socket.end(
        `HTTP/1.1 403 Forbidden\r\ncontent-type: application/json\r\ncontent-length: ${body.length}\r\nconnection: close\r\n\r\n${body}`,
      );
      return;
    }
    // The head and the first bytes from the far side in one write.
    socket.write('HTTP/1.1 200 Connection Established\r\n\r\nhello from upstream;');
    socket.on('end', () => socket.end());
    socket.on('data', (chunk: Buffer) => {
      tunnel.received += chunk.toString();
      socket.write(`echo:${chunk.toString()};`);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: new URL(`http://127.0.0.1:${(server.address() as AddressInfo).port}`),
    requests,
    tunnels,
    connections: () => connections,
    async close() {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

const CREDENTIAL = 'run-credential-0123456789';
const basic = (password: string) => `Basic ${Buffer.from(`reins:${password}`).toString('base64')}`;

interface Answer {
  readonly status: number;
  readonly headers: http.IncomingHttpHeaders;
  readonly body: Buffer;
}

/** An absolute-form request to the local proxy, as an HTTP client with a proxy sends it. */
function viaProxy(
  proxy: LocalProxy,
  target: string,
  options: {
    method?: string;
    headers?: http.OutgoingHttpHeaders | string[];
    body?: Buffer;
    agent?: http.Agent;
  } = {},
): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = http.request({
      host: '127.0.0.1',
      port: proxy.port,
      method: options.method ?? 'GET',
      path: target,
      headers: options.headers ?? { 'proxy-authorization': basic(CREDENTIAL) },
      agent: options.agent ?? false,
      setHost: false,
    });
    req.on('response', (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.on('end', () =>
        resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }),
      );
    });
    req.on('error', reject);
    req.end(options.body);
  });
}

/** Sends raw bytes to the local proxy and collects the answer until `until` holds or it closes. */
function raw(proxy: LocalProxy, bytes: string, until: (text: string) => boolean = () => false) {
  return new Promise<{ text: string; socket: Socket }>((resolve) => {
    const socket = net.connect(proxy.port, '127.0.0.1', () => socket.write(bytes));
    let text = '';
    socket.on('data', (chunk: Buffer) => {
      text += chunk.toString('latin1');
      if (until(text)) resolve({ text, socket });
    });
    socket.on('error', () => resolve({ text, socket }));
    socket.on('close', () => resolve({ text, socket }));
  });
}

/** The values of a header in raw headers, any case. */
function values(rawHeaders: readonly string[], name: string): string[] {
  const found: string[] = [];
  for (let i = 0; i + 1 < rawHeaders.length; i += 2) {
    if (rawHeaders[i]?.toLowerCase() === name) found.push(rawHeaders[i + 1] ?? '');
  }
  return found;
}

describe('the local proxy', () => {
  let gateway: Awaited<ReturnType<typeof startFakeGateway>>;
  let proxy: LocalProxy;
  let tokens: string[];
  const proxies: LocalProxy[] = [];
  beforeAll(async () => {
    gateway = await startFakeGateway();
  });
  afterAll(async () => {
    await gateway.close();
  });
  afterEach(async () => {
    await Promise.all(proxies.splice(0).map((p) => p.close()));
  });
  const start = async (token: () => Promise<string>, url = gateway.url) => {
    const started = await startLocalProxy({ gateway: url, token, credential: CREDENTIAL });
    proxies.push(started);
    return started;
  };
  const startWithTokens = async () => {
    tokens = ['token-1', 'token-2', 'token-3'];
    let n = 0;
    proxy = await start(async () => tokens[Math.min(n++, tokens.length - 1)] ?? '');
  };

  it('listens on loopback and names its credential in its URL', async () => {
    await startWithTokens();
    expect(proxy.url).toBe(`http://reins:${CREDENTIAL}@127.0.0.1:${proxy.port}`);
  });

  it('sends an absolute-form request on with the token in place of the client’s credential', async () => {
    await startWithTokens();
    const answer = await viaProxy(proxy, 'http://api.test:8080/v1/x?q=1', {
      headers: [
        'Host',
        'api.test:8080',
        'Proxy-Authorization',
        basic(CREDENTIAL),
        'X-Multi',
        'one',
        'X-Multi',
        'two',
        'Connection',
        'keep-alive, X-Hop',
        'X-Hop',
        'dropped',
        'Proxy-Connection',
        'keep-alive',
        'User-Agent',
        'agent/1.0',
      ],
    });
    expect(answer.status).toBe(200);
    expect(answer.headers['x-gateway']).toBe('fake');
    const sent = gateway.requests.at(-1);
    expect(sent).toMatchObject({ method: 'GET', url: 'http://api.test:8080/v1/x?q=1' });
    const headers = sent?.rawHeaders ?? [];
    expect(values(headers, 'proxy-authorization')).toEqual(['Bearer token-1']);
    expect(values(headers, 'host')).toEqual(['api.test:8080']);
    expect(values(headers, 'x-multi')).toEqual(['one', 'two']);
    expect(values(headers, 'user-agent')).toEqual(['agent/1.0']);
    expect(values(headers, 'x-hop')).toEqual([]);
    expect(values(headers, 'proxy-connection')).toEqual([]);
  });

  it('adds no Host of its own when the client sent none (the gateway compares Host with the target)', async () => {
    await startWithTokens();
    await viaProxy(proxy, 'http://api.test/v1/no-host');
    expect(values(gateway.requests.at(-1)?.rawHeaders ?? [], 'host')).toEqual([]);
  });

  it('streams a large body to the gateway and the answer back intact', async () => {
    await startWithTokens();
    const body = randomBytes(3 * 1024 * 1024);
    const answer = await viaProxy(proxy, 'http://api.test/v1/upload', {
      method: 'POST',
      headers: { 'proxy-authorization': basic(CREDENTIAL), 'content-type': 'application/octet-stream' },
      body,
    });
    expect(answer.status, answer.body.subarray(0, 200).toString()).toBe(200);
    expect(answer.body.equals(body)).toBe(true);
    expect(gateway.requests.at(-1)).toMatchObject({
      method: 'POST',
      bodyBytes: body.length,
      bodySha256: createHash('sha256').update(body).digest('hex'),
    });
  });

  it('asks for the current token for every request, over one kept-alive connection', async () => {
    await startWithTokens();
    const before = gateway.connections();
    for (let i = 0; i < 3; i++) await viaProxy(proxy, `http://api.test/v1/${i}`);
    expect(gateway.requests.slice(-3).map((r) => values(r.rawHeaders, 'proxy-authorization')[0])).toEqual([
      'Bearer token-1',
      'Bearer token-2',
      'Bearer token-3',
    ]);
    expect(gateway.connections() - before).toBe(1);
  });

  it('answers 407 to a client without this run’s credential, and the gateway hears nothing', async () => {
    await startWithTokens();
    const before = { requests: gateway.requests.length, tunnels: gateway.tunnels.length };
    for (const headers of [
      {},
      { 'proxy-authorization': basic('guess') },
      { 'proxy-authorization': 'Bearer token' },
    ]) {
      const answer = await viaProxy(proxy, 'http://api.test/v1/x', { headers });
      expect(answer.status).toBe(407);
      expect(answer.headers['proxy-authenticate']).toBe('Basic realm="reins run"');
      expect(JSON.parse(answer.body.toString())).toMatchObject({ error: 'proxy_auth_required' });
    }
    const { text } = await raw(proxy, 'CONNECT api.test:443 HTTP/1.1\r\nHost: api.test:443\r\n\r\n');
    expect(text).toMatch(/^HTTP\/1\.1 407 /);
    expect(text).toContain('proxy-authenticate: Basic realm="reins run"');
    expect({ requests: gateway.requests.length, tunnels: gateway.tunnels.length }).toEqual(before);
  });

  it('answers 400 to a request that is not a proxy request', async () => {
    await startWithTokens();
    const answer = await viaProxy(proxy, '/v1/x');
    expect(answer.status).toBe(400);
  });

  it('relays CONNECT with the token, the client’s early bytes, and the bytes that came with the 200', async () => {
    await startWithTokens();
    const head = `CONNECT whole.test:443 HTTP/1.1\r\nHost: whole.test:443\r\nProxy-Authorization: ${basic(CREDENTIAL)}\r\nUser-Agent: agent/2\r\n\r\n`;
    const { text, socket } = await raw(proxy, `${head}early bytes`, (t) => t.includes('echo:early bytes;'));
    expect(text).toBe('HTTP/1.1 200 Connection Established\r\n\r\nhello from upstream;echo:early bytes;');
    socket.write('second');
    await new Promise<void>((resolve) =>
      socket.on('data', (chunk) => chunk.toString().includes('echo:second') && resolve()),
    );
    socket.destroy();
    const tunnel = gateway.tunnels.at(-1);
    expect(tunnel?.target).toBe('whole.test:443');
    expect(values(tunnel?.rawHeaders ?? [], 'proxy-authorization')).toEqual(['Bearer token-1']);
    expect(values(tunnel?.rawHeaders ?? [], 'host')).toEqual(['whole.test:443']);
    expect(values(tunnel?.rawHeaders ?? [], 'user-agent')).toEqual(['agent/2']);
    expect(tunnel?.received).toBe('early bytessecond');
  });

  it('relays a refused CONNECT’s head and JSON body, then closes', async () => {
    await startWithTokens();
    const { text } = await raw(
      proxy,
      `CONNECT denied.test:443 HTTP/1.1\r\nHost: denied.test:443\r\nProxy-Authorization: ${basic(CREDENTIAL)}\r\n\r\n`,
    );
    expect(text).toMatch(/^HTTP\/1\.1 403 Forbidden\r\n/);
    expect(JSON.parse(text.slice(text.indexOf('\r\n\r\n') + 4))).toEqual({
      error: 'egress_denied',
      reason: 'no_matching_rule',
    });
  });

  it('answers 503 token_unavailable when no token comes, for both kinds of request', async () => {
    proxy = await start(async () => {
      throw new AgentRunError('token_unavailable', 'no usable token within 30000 ms: invalid_client');
    });
    const answer = await viaProxy(proxy, 'http://api.test/v1/x');
    expect(answer.status).toBe(503);
    expect(JSON.parse(answer.body.toString())).toEqual({
      error: 'token_unavailable',
      error_description: 'no usable token within 30000 ms: invalid_client',
    });
    const { text } = await raw(
      proxy,
      `CONNECT whole.test:443 HTTP/1.1\r\nProxy-Authorization: ${basic(CREDENTIAL)}\r\n\r\n`,
    );
    expect(text).toMatch(/^HTTP\/1\.1 503 /);
  });

  it('answers 502 gateway_unreachable when the gateway is down, for both kinds of request', async () => {
    const closed = net.createServer();
    await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve));
    const port = (closed.address() as AddressInfo).port;
    await new Promise<void>((resolve) => closed.close(() => resolve()));
    proxy = await start(async () => 'token-1', new URL(`http://127.0.0.1:${port}`));
    const answer = await viaProxy(proxy, 'http://api.test/v1/x');
    expect(answer.status).toBe(502);
    expect(JSON.parse(answer.body.toString())).toMatchObject({ error: 'gateway_unreachable' });
    const { text } = await raw(
      proxy,
      `CONNECT whole.test:443 HTTP/1.1\r\nProxy-Authorization: ${basic(CREDENTIAL)}\r\n\r\n`,
    );
    expect(text).toMatch(/^HTTP\/1\.1 502 /);
    expect(text).toContain('ECONNREFUSED');
  });

  it('closes open tunnels when it stops', async () => {
    await startWithTokens();
    const { socket } = await raw(
      proxy,
      `CONNECT whole.test:443 HTTP/1.1\r\nProxy-Authorization: ${basic(CREDENTIAL)}\r\n\r\n`,
      (t) => t.includes('hello from upstream'),
    );
    const closed = new Promise<void>((resolve) => socket.on('close', () => resolve()));
    await proxy.close();
    await closed;
  });
});
