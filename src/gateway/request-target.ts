// Reading what a proxy request asks for (PURE): the absolute-form target of a forwarded request
// (`GET http://api.example.com/v1/x HTTP/1.1`) or the authority-form of CONNECT
// (`CONNECT api.example.com:443`), normalised once with the grammar's normaliseTarget.
//
// Ambiguous targets are refused, not repaired (threat: the gateway checking one destination
// while the upstream or a later hop reads another): userinfo, fragments, an absolute URI whose
// host disagrees with `Host`, several `Host` headers, a CONNECT whose `Host` names another
// authority than its target, and the path forms normaliseTarget refuses (encoded `/` or `\`,
// NUL, dot segments escaping the root).
//
// HTTP/1.1 framing is strict (RFC 9112 §3.2): a request without `Host` is refused with 400
// (`missing_host`) even when its absolute-form target names the host; HTTP/1.0 has no such rule.
import { normaliseTarget, type Target } from '../egress/index.ts';

export type TargetRead =
  | { readonly ok: true; readonly target: Target; readonly forwardPath: string; readonly authority: string }
  | {
      readonly ok: false;
      readonly reason: 'ambiguous_target' | 'malformed' | 'missing_host';
      readonly detail: string;
    };

const NO_HOST = 'an HTTP/1.1 request needs a Host header (RFC 9112 §3.2)';

/**
 * An absolute-form request target, with every Host header the request carried. `hostRequired`:
 * the request is HTTP/1.1 (or later), so it must carry a Host.
 */
export function readAbsoluteTarget(
  method: string,
  url: string,
  hostHeaders: readonly string[],
  hostRequired = false,
): TargetRead {
  const match = /^(https?):\/\/([^/?#]*)(.*)$/i.exec(url);
  if (match === null) {
    return malformed('send absolute-form targets (http://host/path); this is a proxy, not an origin server');
  }
  const scheme = (match[1] as string).toLowerCase();
  const authority = match[2] as string;
  const rest = match[3] as string;
  if (authority.includes('@')) return ambiguous('userinfo in the target is not allowed');
  if (rest.includes('#')) return ambiguous('a fragment in the target is not allowed');
  const hostPort = splitAuthority(authority);
  if (hostPort === null) return malformed('the target has no valid host');
  const path = rest === '' ? '/' : rest;
  if (!path.startsWith('/') && !path.startsWith('?')) return malformed('the target path must start with /');
  const normalised = normaliseTarget({
    method,
    scheme,
    host: hostPort.host,
    port: hostPort.port,
    path: path.startsWith('?') ? `/${path}` : path,
  });
  if (!normalised.ok) return fromProblem(normalised.problem, normalised.message);

  if (hostHeaders.length > 1) return ambiguous('more than one Host header');
  if (hostHeaders.length === 0 && hostRequired) return missingHost();
  if (hostHeaders.length === 1) {
    const named = splitAuthority((hostHeaders[0] as string).trim());
    const same =
      named !== null &&
      normaliseTarget({ method, scheme, host: named.host, port: named.port, path: '/' }).ok &&
      sameOrigin(normalised.target, method, scheme, named);
    if (!same) return ambiguous('the Host header names another host than the target');
  }
  return {
    ok: true,
    target: normalised.target,
    forwardPath: normalised.forwardPath,
    authority: hostPort.port === null ? hostPort.host : `${hostPort.host}:${hostPort.port}`,
  };
}

/**
 * A CONNECT target: `host:port`, the port required (RFC 9110 §9.3.6), with every Host header the
 * request carried. The Host must name the same host; it may leave the port out (RFC 9110's own
 * example does), but a port it names must be the target's. Threat: a component after the gateway
 * (or a log reader) taking the Host for the destination of a tunnel that goes elsewhere.
 */
export function readConnectTarget(
  url: string,
  scheme: 'https' | 'http',
  hostHeaders: readonly string[] = [],
  hostRequired = false,
): TargetRead {
  const hostPort = splitAuthority(url);
  if (hostPort === null || hostPort.port === null) {
    return malformed('CONNECT needs host:port');
  }
  const normalised = normaliseTarget({
    method: 'CONNECT',
    scheme,
    host: hostPort.host,
    port: hostPort.port,
    path: '/',
  });
  if (!normalised.ok) return fromProblem(normalised.problem, normalised.message);
  if (hostHeaders.length > 1) return ambiguous('more than one Host header');
  if (hostHeaders.length === 0 && hostRequired) return missingHost();
  if (hostHeaders.length === 1) {
    const named = splitAuthority((hostHeaders[0] as string).trim());
    const same =
      named !== null &&
      sameOrigin(normalised.target, 'CONNECT', scheme, {
        host: named.host,
        port: named.port ?? hostPort.port,
      });
    if (!same) return ambiguous('the Host header names another authority than the CONNECT target');
  }
  return {
    ok: true,
    target: { ...normalised.target, path: [] },
    forwardPath: '/',
    authority: `${hostPort.host}:${hostPort.port}`,
  };
}

interface HostPort {
  readonly host: string;
  readonly port: string | null;
}

function splitAuthority(authority: string): HostPort | null {
  if (authority === '' || /[\s@/\\?#]/.test(authority)) return null;
  if (authority.startsWith('[')) {
    const close = authority.indexOf(']');
    if (close < 0) return null;
    const after = authority.slice(close + 1);
    if (after !== '' && !/^:[0-9]{1,5}$/.test(after)) return null;
    return { host: authority.slice(0, close + 1), port: after === '' ? null : after.slice(1) };
  }
  const colon = authority.lastIndexOf(':');
  if (colon < 0) return { host: authority, port: null };
  if (authority.indexOf(':') !== colon) return null;
  const port = authority.slice(colon + 1);
  if (!/^[0-9]{1,5}$/.test(port)) return null;
  return { host: authority.slice(0, colon), port };
}

function sameOrigin(target: Target, method: string, scheme: string, named: HostPort): boolean {
  const other = normaliseTarget({ method, scheme, host: named.host, port: named.port, path: '/' });
  if (!other.ok) return false;
  const a = target.host;
  const b = other.target.host;
  const sameHost =
    a.kind === 'name' && b.kind === 'name'
      ? a.name === b.name
      : a.kind === 'ip' && b.kind === 'ip' && a.bytes.join('.') === b.bytes.join('.');
  return sameHost && target.port === other.target.port;
}

function fromProblem(problem: string, message: string): TargetRead {
  // Path forms that servers read differently are ambiguity, not mere syntax errors.
  if (problem === 'bad_method' || problem === 'bad_scheme' || problem === 'bad_port')
    return malformed(message);
  if (problem === 'bad_host') return malformed(message);
  return ambiguous(message);
}

function ambiguous(detail: string): TargetRead {
  return { ok: false, reason: 'ambiguous_target', detail };
}

function missingHost(): TargetRead {
  return { ok: false, reason: 'missing_host', detail: NO_HOST };
}

function malformed(detail: string): TargetRead {
  return { ok: false, reason: 'malformed', detail };
}
