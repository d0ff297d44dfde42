// The gateway's Prometheus metrics. Labels are low-cardinality on purpose: outcome and reason
// come from closed lists; agent ids, tenants and hosts are never labels (they would let one
// noisy tenant blow up every scrape).
import { Counter, Gauge, Histogram, type Registry } from 'prom-client';

/** What a CONNECT opened: a plain tunnel, an inspected one, or none (refused, upstream failed). */
export type TunnelMode = 'plain' | 'inspected' | 'none';

export type Outcome = 'allowed' | 'denied' | 'unauthenticated' | 'bad_request' | 'upstream_error';

/** The outcome label of a decision answered with `status` (null: no status, e.g. a refused TLS handshake). */
export function outcomeOf(decision: 'allowed' | 'denied', status: number | null): Outcome {
  if (status === 407) return 'unauthenticated';
  if (status === 400) return 'bad_request';
  if ((status ?? 0) >= 500) return 'upstream_error';
  return decision;
}

export interface GatewayMetrics {
  /** Requests: absolute-form ones and those inside inspected tunnels. Never CONNECTs. */
  readonly decisions: Counter<'outcome' | 'reason'>;
  /**
   * CONNECTs, apart from requests: a tunnel opened is not a request allowed (an inspected tunnel
   * whose every request is refused would otherwise count as allowed traffic).
   */
  readonly tunnelsOpened: Counter<'outcome' | 'reason' | 'mode'>;
  readonly decisionSeconds: Histogram;
  readonly upstreamSeconds: Histogram<'kind'>;
  readonly tunnels: Gauge;
  readonly tokenCache: Counter<'result'>;
}

export function gatewayMetrics(registry: Registry, auditDepth: () => number): GatewayMetrics {
  new Gauge({
    name: 'reins_gateway_audit_queue_depth',
    help: 'Audit rows waiting to be written.',
    registers: [registry],
    collect() {
      this.set(auditDepth());
    },
  });
  return {
    decisions: new Counter({
      name: 'reins_gateway_decisions_total',
      help: 'Gateway decisions on requests (absolute-form and inside inspected tunnels; CONNECTs are in reins_gateway_tunnels_total) by outcome (allowed, denied, unauthenticated, bad_request, upstream_error) and reason.',
      labelNames: ['outcome', 'reason'],
      registers: [registry],
    }),
    tunnelsOpened: new Counter({
      name: 'reins_gateway_tunnels_total',
      help: 'CONNECT decisions by outcome, reason and mode (plain, inspected, or none when no tunnel opened). A plain tunnel is counted when it closes (its audit row carries its bytes), an inspected one when it opens.',
      labelNames: ['outcome', 'reason', 'mode'],
      registers: [registry],
    }),
    decisionSeconds: new Histogram({
      name: 'reins_gateway_decision_seconds',
      help: 'Time from a request head to the decision (token check, policy, DNS).',
      buckets: [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5],
      registers: [registry],
    }),
    upstreamSeconds: new Histogram({
      name: 'reins_gateway_upstream_seconds',
      help: 'Time from dialling the upstream to its response head (requests) or the tunnel opening.',
      labelNames: ['kind'],
      buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10],
      registers: [registry],
    }),
    tunnels: new Gauge({
      name: 'reins_gateway_tunnels_active',
      help: 'CONNECT tunnels open now.',
      registers: [registry],
    }),
    tokenCache: new Counter({
      name: 'reins_gateway_token_cache_total',
      help: 'Token checks answered from the verified-token cache (hit) or by verifying (miss).',
      labelNames: ['result'],
      registers: [registry],
    }),
  };
}
