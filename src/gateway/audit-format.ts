// One gateway decision as an audit event, and its Elastic Common Schema (ECS) form for the JSON
// log line. Pure: no I/O, no clock, no logger. The writer (audit.ts) logs what ecsFields returns
// and stores the same facts as a row of audit_events (migrations/001_foundation.sql).
//
// The ECS form is nested objects (`{ event: { action } }`), not dotted keys (`'event.action'`):
// that is what ECS loggers emit and what Elasticsearch, Filebeat and jq all read without
// configuration. Facts ECS has no field for live under `reins.*`, the custom namespace ECS
// recommends. Null facts are left out rather than written as null (ECS: absent means unknown).
//
// Threat: a query string can carry secrets (API keys, signed URLs, OAuth codes). It is never
// logged or stored: `path` is cut at the first `?` (and `#`) even if a caller passes one in.
import { parseAddress } from '../egress/address.ts';
import type { ExchangeEvent } from './events.ts';

export type AuditDecision = ExchangeEvent['decision'];

/**
 * What the audit keeps of one exchange: the gateway's event (events.ts, where every field is
 * described) without what only metrics read, with the reason as text (rows written by older
 * versions, and tests, may carry any) and the detail optional.
 */
export type AuditEvent = Omit<
  ExchangeEvent,
  'kind' | 'tunnel' | 'decisionMs' | 'upstreamMs' | 'reason' | 'detail' | 'durationMs'
> & {
  /** Why it ended as it did (reasons.ts), or null. */
  readonly reason: string | null;
  readonly durationMs: number | null;
  /** migrations/006_audit_detail.sql: a 407's credential problem, a 400's fault in words. */
  readonly detail?: string | null;
};

/** The ECS version the field names follow. */
export const ECS_VERSION = '8.11.0';

/** `path` without any query or fragment. */
export function pathWithoutQuery(path: string | null): string | null {
  if (path === null) return null;
  const cut = path.search(/[?#]/);
  return cut === -1 ? path : path.slice(0, cut);
}

/** The host as an address literal without brackets, or null when it is a DNS name. */
function hostAddress(host: string | null): string | null {
  if (host === null || parseAddress(host) === null) return null;
  return host.startsWith('[') ? host.slice(1, -1) : host;
}

/**
 * `members` without its null and undefined ones; undefined when none is left. `members` itself
 * when it has none to drop (most of a line's objects): this runs for every exchange, and copying
 * through entry arrays was a third of building a line.
 */
function present(members: Record<string, unknown>): Record<string, unknown> | undefined {
  let kept = 0;
  let dropped = 0;
  for (const key in members) {
    if (members[key] === null || members[key] === undefined) dropped++;
    else kept++;
  }
  if (kept === 0) return undefined;
  if (dropped === 0) return members;
  const out: Record<string, unknown> = {};
  for (const key in members) {
    const value = members[key];
    if (value !== null && value !== undefined) out[key] = value;
  }
  return out;
}

/**
 * The event under ECS field names, as nested objects. Every field:
 *
 * | event field     | ECS field                                                               |
 * | --------------- | ----------------------------------------------------------------------- |
 * | time            | `@timestamp` (ISO 8601)                                                 |
 * | requestId       | `http.request.id`                                                       |
 * | tenant          | `organization.id`                                                       |
 * | agent           | `reins.agent`                                                           |
 * | subject         | `user.id`                                                               |
 * | delegationChain | `reins.delegation_chain` (the `act` object, unchanged)                  |
 * | jti             | `reins.jti`                                                             |
 * | method          | `http.request.method`                                                   |
 * | scheme          | `url.scheme`                                                            |
 * | host            | `destination.domain` and `url.domain` (a name) or `destination.ip` (a literal) |
 * | port            | `destination.port` and `url.port`                                       |
 * | path            | `url.path` (never a query)                                              |
 * | decision        | `event.action` (allowed/denied), `event.outcome` (success/failure), `event.type` |
 * | reason          | `event.reason`                                                          |
 * | matchedRule     | `reins.matched_rule`                                                    |
 * | resolvedAddress | `destination.ip` (when the host is a name)                              |
 * | inspected       | `reins.inspected`                                                       |
 * | status          | `http.response.status_code`                                             |
 * | bytesOut        | `source.bytes` (ECS: sent from the source to the destination)           |
 * | bytesIn         | `destination.bytes` (ECS: sent from the destination to the source)      |
 * | durationMs      | `event.duration` (nanoseconds, as ECS has it)                           |
 * | detail          | `reins.detail`                                                          |
 *
 * plus `ecs.version`, `event.kind` (`event`), `event.category` (`network`), `event.dataset`
 * (`reins.audit`) and `network.bytes` (both ways).
 */
export function ecsFields(event: AuditEvent): Record<string, unknown> {
  const allowed = event.decision === 'allowed';
  const literal = hostAddress(event.host);
  const time = event.time instanceof Date && !Number.isNaN(event.time.getTime()) ? event.time : null;
  const duration =
    typeof event.durationMs === 'number' && Number.isFinite(event.durationMs)
      ? Math.round(event.durationMs * 1_000_000)
      : null;
  return (
    present({
      '@timestamp': time?.toISOString(),
      ecs: { version: ECS_VERSION },
      event: present({
        kind: 'event',
        category: ['network'],
        type: ['connection', allowed ? 'allowed' : 'denied'],
        dataset: 'reins.audit',
        action: allowed ? 'allowed' : 'denied',
        outcome: allowed ? 'success' : 'failure',
        reason: event.reason,
        duration,
      }),
      http: present({
        request: present({ id: event.requestId, method: event.method }),
        response: present({ status_code: event.status }),
      }),
      url: present({
        scheme: event.scheme,
        domain: literal === null ? event.host : null,
        port: event.port,
        path: pathWithoutQuery(event.path),
      }),
      destination: present({
        domain: literal === null ? event.host : null,
        ip: literal ?? event.resolvedAddress,
        port: event.port,
        bytes: event.bytesIn,
      }),
      source: { bytes: event.bytesOut },
      network: { bytes: event.bytesIn + event.bytesOut },
      user: present({ id: event.subject }),
      organization: present({ id: event.tenant }),
      reins: present({
        agent: event.agent,
        jti: event.jti,
        // The act claim as issued, unchanged (its own members are not pruned).
        delegation_chain: event.delegationChain,
        matched_rule: event.matchedRule,
        inspected: event.inspected,
        detail: event.detail,
      }),
    }) ?? {}
  );
}
