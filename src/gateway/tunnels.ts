// CONNECT: a plain tunnel to an origin the token grants whole (end-to-end TLS, nothing
// inspected), an inspected tunnel to one it grants in part (inspect.ts), a refusal otherwise.
import { randomUUID } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import net, { type Socket } from 'node:net';
import { denial, headerValues, isHttp11, write407, writeRefusal } from './answers.ts';
import { authenticate, judge } from './check.ts';
import type { Bound, Core } from './core.ts';
import { isTimeout } from './forward.ts';
import { openInspected } from './inspect.ts';
import { readConnectTarget } from './request-target.ts';

export async function onConnect(
  core: Core,
  req: IncomingMessage,
  socket: Socket,
  head: Buffer,
): Promise<void> {
  const { options, limits, now, bound, tunnelsByJti, auditRoom, record } = core;
  await auditRoom();
  const started = performance.now();
  const requestId = randomUUID();
  const hosts = headerValues(req, 'host');
  const hostRequired = isHttp11(req);
  // CONNECT names no scheme: the tunnel is allowed when the origin is granted whole under
  // either (whatever runs inside then reaches nothing the token does not grant). Read before the
  // token is checked, so that a 407's audit row says where it was going.
  let read = readConnectTarget(req.url ?? '', 'https', hosts, hostRequired);
  const auth = await authenticate(options, headerValues(req, 'proxy-authorization'));
  if (!auth.ok) {
    write407(socket, auth.problem, auth.detail, requestId);
    record(requestId, null, read.ok ? read : null, 'denied', 'invalid_token', 407, started, {
      tunnel: 'none',
      detail: auth.problem,
    });
    return;
  }
  const { facts } = auth;
  if (!read.ok) {
    writeRefusal(
      socket,
      { status: 400, reason: read.reason },
      { error: 'bad_request', reason: read.reason, detail: read.detail, request_id: requestId },
    );
    record(requestId, facts, null, 'denied', read.reason, 400, started, {
      tunnel: 'none',
      detail: read.detail,
    });
    return;
  }
  let verdict = await judge(options, facts, read.target, true);
  // CONNECT names no scheme: when no https rule names the origin, an http rule may (Node's
  // fetch tunnels http:// URLs too). Only then: any other refusal (cross_tenant, a forbidden
  // address, a partial grant) stands, whatever an http rule for the same port says.
  if (verdict.verdict === 'deny' && verdict.reason === 'no_matching_rule') {
    const plain = readConnectTarget(req.url ?? '', 'http', hosts, hostRequired);
    if (plain.ok) {
      read = plain;
      verdict = await judge(options, facts, plain.target, true);
    }
  }
  options.metrics?.decisionSeconds.observe((performance.now() - started) / 1000);
  const mode = options.intercept ?? 'auto';
  const partial = verdict.verdict === 'deny' && verdict.reason === 'connect_needs_whole_origin';
  const inspect = (partial && mode !== 'never') || (verdict.verdict === 'allow' && mode === 'always');
  if (inspect && options.interceptor !== undefined) {
    await openInspected(core, socket, head, facts, read, requestId, started, options.interceptor);
    return;
  }
  if (verdict.verdict === 'deny') {
    writeRefusal(socket, { status: 403, reason: verdict.reason }, denial(verdict, read, requestId));
    record(requestId, facts, read, 'denied', verdict.reason, 403, started, {
      address: verdict.address,
      tunnel: 'none',
    });
    return;
  }
  const open = tunnelsByJti.get(facts.jti) ?? 0;
  if (open >= limits.tunnelsPerToken) {
    writeRefusal(
      socket,
      { status: 429, reason: 'too_many_tunnels' },
      { error: 'budget_exceeded', reason: 'too_many_tunnels', request_id: requestId },
      { 'retry-after': '1' },
    );
    record(requestId, facts, read, 'denied', 'too_many_tunnels', 429, started, { tunnel: 'none' });
    return;
  }
  // The slot is taken now, not once the upstream answers: a burst of CONNECTs must not all
  // pass the check before any of them counts.
  tunnelsByJti.set(facts.jti, open + 1);
  let slotHeld = true;
  const releaseSlot = () => {
    if (!slotHeld) return;
    slotHeld = false;
    const left = (tunnelsByJti.get(facts.jti) ?? 1) - 1;
    if (left <= 0) tunnelsByJti.delete(facts.jti);
    else tunnelsByJti.set(facts.jti, left);
  };
  const allowed = verdict;
  const dialled = performance.now();
  const upstream = net.connect({ host: allowed.address, port: read.target.port });
  socket.once('close', () => {
    if (!opened) {
      upstream.destroy();
      releaseSlot();
    }
  });
  upstream.setTimeout(limits.upstreamTimeoutMs, () =>
    upstream.destroy(Object.assign(new Error('timeout'), { code: 'UPSTREAM_TIMEOUT' })),
  );
  const readOk = read;
  let opened = false;
  let bytesIn = 0;
  let bytesOut = head.length;
  upstream.on('error', (err) => {
    if (!opened) {
      releaseSlot();
      const status = isTimeout(err) ? 504 : 502;
      const reason = isTimeout(err) ? 'upstream_timeout' : 'upstream_unreachable';
      writeRefusal(socket, { status, reason }, { error: 'upstream_error', reason, request_id: requestId });
      record(requestId, facts, readOk, 'allowed', reason, status, started, {
        address: allowed.address,
        rule: allowed.rule,
        tunnel: 'none',
      });
    } else socket.destroy();
  });
  upstream.on('connect', () => {
    opened = true;
    // The token may have died while the name resolved and the upstream answered.
    if (
      options.live.isRevoked(facts.jti) ||
      options.live.isQuarantined(facts.tenant, facts.agent) ||
      facts.exp <= Math.floor(now().getTime() / 1000)
    ) {
      releaseSlot();
      upstream.destroy();
      socket.destroy();
      return;
    }
    upstream.setTimeout(limits.idleTimeoutMs);
    options.metrics?.upstreamSeconds.observe({ kind: 'tunnel' }, (performance.now() - dialled) / 1000);
    options.metrics?.tunnels.inc();
    const entry: Bound = { facts, sockets: [socket, upstream], tunnel: readOk.target };
    bound.add(entry);
    socket.write('HTTP/1.1 200 Connection Established\r\n\r\n');
    if (head.length > 0) upstream.write(head);
    socket.on('data', (chunk: Buffer) => {
      bytesOut += chunk.length;
    });
    upstream.on('data', (chunk: Buffer) => {
      bytesIn += chunk.length;
    });
    socket.pipe(upstream);
    upstream.pipe(socket);
    let closed = false;
    const close = () => {
      if (closed) return;
      closed = true;
      socket.destroy();
      upstream.destroy();
      bound.delete(entry);
      releaseSlot();
      options.metrics?.tunnels.dec();
      record(requestId, facts, readOk, 'allowed', null, 200, started, {
        address: allowed.address,
        rule: allowed.rule,
        bytesIn,
        bytesOut,
        tunnel: 'plain',
      });
    };
    socket.on('close', close);
    upstream.on('close', close);
  });
}
