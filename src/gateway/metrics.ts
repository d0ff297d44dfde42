// The gateway's Prometheus metrics. Labels are low-cardinality on purpose: outcome and reason
// come from closed lists; agent ids, tenants and hosts are never labels (they would let one
// noisy tenant blow up every scrape).
import { Counter, Gauge, Histogram, type Registry } from 'prom-client';

export interface GatewayMetrics {
  readonly decisions: Counter<'outcome' | 'reason'>;
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
      help: 'Gateway decisions by outcome (allowed, denied, unauthenticated, bad_request, upstream_error) and reason.',
      labelNames: ['outcome', 'reason'],
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
