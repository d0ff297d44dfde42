// The gateway's Prometheus metrics. Labels are low-cardinality on purpose: outcome and reason
// come from closed lists; agent ids, tenants and hosts are never labels (they would let one
// noisy tenant blow up every scrape).
//
// The metrics follow the gateway's event stream (events.ts): nothing in the request path counts.
import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import type { ExchangeEvent, ExchangeStream } from './events.ts';
import { type OutcomeLabel, REASONS } from './reasons.ts';

export type { TunnelMode } from './events.ts';

/** The outcome label of an exchange: its reason's row (reasons.ts), or allowed when it had none. */
export function outcomeOf(event: Pick<ExchangeEvent, 'reason'>): OutcomeLabel {
  return event.reason === null ? 'allowed' : REASONS[event.reason].outcome;
}

/** Counts every exchange of `stream` into `metrics`; returns the unsubscribe. */
export function observeMetrics(stream: ExchangeStream, metrics: GatewayMetrics): () => void {
  const offExchanges = stream.subscribe((event) => {
    const outcome = outcomeOf(event);
    const reason = event.reason ?? 'none';
    if (event.kind === 'request') metrics.decisions.inc({ outcome, reason });
    else metrics.tunnelsOpened.inc({ outcome, reason, mode: event.tunnel ?? 'none' });
    if (event.decisionMs !== null) metrics.decisionSeconds.observe(event.decisionMs / 1000);
    if (event.upstreamMs !== null) {
      metrics.upstreamSeconds.observe(
        { kind: event.kind === 'request' ? 'request' : 'tunnel' },
        event.upstreamMs / 1000,
      );
    }
  });
  const offTunnels = stream.onTunnel((event) => {
    if (event.phase === 'open') metrics.tunnels.inc();
    else metrics.tunnels.dec();
  });
  return () => {
    offExchanges();
    offTunnels();
  };
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

export function gatewayMetrics(
  registry: Registry,
  auditDepth: () => number,
  auditSpooled: () => number = () => 0,
): GatewayMetrics {
  new Gauge({
    name: 'reins_gateway_audit_queue_depth',
    help: 'Audit rows waiting to be written (in memory and in the spool).',
    registers: [registry],
    collect() {
      this.set(auditDepth());
    },
  });
  new Gauge({
    name: 'reins_gateway_audit_spooled',
    help: 'Audit rows waiting in the local spool file for the database to come back.',
    registers: [registry],
    collect() {
      this.set(auditSpooled());
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
