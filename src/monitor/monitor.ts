// Monitoring as one pure state machine: decision events in, findings out. Each event is learnt by
// the baseline of its agent and, for a delegated token, of its agent acting for that user; the
// tenant's policy's detections run on both, and hysteresis (incidents.ts) turns a condition that
// keeps holding into one finding. The runtime feeds it from the gateway's event stream (never from
// a request's path) and acts on what it returns; nothing here does I/O or reads a clock.
import { Baseline, type BaselineSnapshot, type Observed, type SubjectKey, type Windows } from './baseline.ts';
import { detect, type Finding } from './detections.ts';
import { Incidents, subjectId } from './incidents.ts';
import type { MonitoringPolicy } from './policy.ts';

/** A decision event as the gateway publishes it (events.ts's ExchangeEvent is one). */
export interface MonitoredEvent extends Omit<Observed, 'time'> {
  readonly time: Date;
  readonly tenant: string | null;
  readonly agent: string | null;
  readonly subject: string | null;
}

export class Monitor {
  readonly #baselines = new Map<string, Baseline>();
  readonly #incidents = new Incidents();

  /** `policyOf` gives a tenant's monitoring policy; undefined: the tenant is not monitored. */
  constructor(private readonly policyOf: (tenant: string) => MonitoringPolicy | undefined) {}

  /** Learns one event; returns the findings that open an incident, agent-level ones first. */
  observe(event: MonitoredEvent): Finding[] {
    const { tenant, agent } = event;
    // A request without a verified token (a 407) belongs to no tenant and no agent.
    if (tenant === null || agent === null) return [];
    const policy = this.policyOf(tenant);
    if (policy === undefined) return [];
    const observed: Observed = { ...event, time: event.time.getTime() };
    const windows = windowsOf(policy);
    const keys: SubjectKey[] = [{ tenant, agent, user: null }];
    // Delegated: the token's subject is a user the agent acts for.
    if (event.subject !== null && event.subject !== agent) keys.push({ tenant, agent, user: event.subject });
    const reported: Finding[] = [];
    const seen = new Set<string>();
    for (const key of keys) {
      const baseline = this.#baseline(key, observed.time);
      const novelty = baseline.observe(observed, policy.learningPeriodMs, windows);
      for (const finding of detect(baseline, observed, novelty, policy)) {
        // The agent's own finding stands for the same detection of the agent acting for a user:
        // one event, one incident, however many baselines it meets the condition in.
        const opens = this.#incidents.opens(finding, policy);
        const told = seen.has(finding.detection);
        seen.add(finding.detection);
        if (opens && !told) reported.push(finding);
      }
    }
    return reported;
  }

  baseline(key: SubjectKey): Baseline | undefined {
    return this.#baselines.get(subjectId(key));
  }

  /** Every baseline, for persisting (their snapshots) and for `reins baseline show`. */
  baselines(): IterableIterator<Baseline> {
    return this.#baselines.values();
  }

  /** Continues a baseline learnt elsewhere (another process, before a restart). */
  restore(key: SubjectKey, snapshot: BaselineSnapshot): void {
    this.#baselines.set(subjectId(key), Baseline.restore(key, snapshot));
  }

  #baseline(key: SubjectKey, time: number): Baseline {
    const id = subjectId(key);
    let baseline = this.#baselines.get(id);
    if (baseline === undefined) {
      baseline = new Baseline(key, time);
      this.#baselines.set(id, baseline);
    }
    return baseline;
  }
}

function windowsOf(policy: MonitoringPolicy): Windows {
  return {
    newHostsMs: policy.destinationBurst?.withinMs ?? 0,
    denialsMs: policy.denialSpike?.withinMs ?? 0,
    bytesMs: policy.bytesOutSpike?.withinMs ?? 0,
  };
}
