// Monitoring's pure core: what each detection notices (and what it must not), one incident per
// burst rather than one alert per event, and baselines that carry over a restart.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { ExchangeEvent } from '../../src/gateway/events.ts';
import {
  DETECTIONS,
  type DetectionName,
  type Finding,
  MIN_BYTES_BASELINE,
  Monitor,
  type MonitoredEvent,
  type MonitoringPolicy,
  parseDuration,
  parseSize,
  QUIET_MS,
} from '../../src/monitor/index.ts';

const MINUTE = 60_000;
const LEARNING = 10 * MINUTE;
const T0 = Date.UTC(2026, 11, 5, 9, 0, 0);

const EVERYTHING: MonitoringPolicy = {
  learningPeriodMs: LEARNING,
  newDestination: { response: 'alert' },
  destinationBurst: { newHosts: 5, withinMs: MINUTE, response: 'quarantine' },
  denialSpike: { denials: 20, withinMs: MINUTE, response: 'revoke' },
  bytesOutSpike: { factor: 10, withinMs: 5 * MINUTE, response: 'alert' },
  forbiddenAddress: { response: 'alert' },
  newMethod: { response: 'alert' },
};

let sequence = 0;
function event(at: number, fields: Partial<MonitoredEvent> = {}): MonitoredEvent {
  sequence++;
  return {
    time: new Date(T0 + at),
    requestId: `r${sequence}`,
    tenant: 'acme',
    agent: 'billing-agent',
    subject: 'billing-agent',
    jti: 'j1',
    method: 'GET',
    host: 'api.stripe.com',
    decision: 'allowed',
    reason: null,
    matchedRule: 'https://api.stripe.com/v1/',
    bytesOut: 200,
    ...fields,
  };
}

/** A monitor that has watched billing-agent talk to two hosts through its learning period. */
function learnt(policy: MonitoringPolicy = EVERYTHING): Monitor {
  const monitor = new Monitor((tenant) => (tenant === 'acme' ? policy : undefined));
  for (let at = 0; at <= LEARNING; at += 10_000) {
    expect(monitor.observe(event(at))).toEqual([]);
    expect(monitor.observe(event(at + 1, { host: 'invoices.acme.internal', matchedRule: null }))).toEqual([]);
  }
  return monitor;
}

const AFTER = LEARNING + MINUTE;
const names = (findings: Finding[]) => findings.map((f) => f.detection);

describe('the detections', () => {
  // One row per detection: an event sequence after learning that must raise it. The guard below
  // fails when a detection has no row.
  const raises: Record<DetectionName, (monitor: Monitor) => Finding[]> = {
    new_destination: (m) => m.observe(event(AFTER, { host: 'paste.example' })),
    destination_burst: (m) =>
      ['a', 'b', 'c', 'd', 'e'].flatMap((h, i) =>
        m.observe(event(AFTER + i * 1000, { host: `${h}.example` })),
      ),
    denial_spike: (m) =>
      Array.from({ length: 20 }, (_, i) =>
        m.observe(
          event(AFTER + i * 100, { decision: 'denied', reason: 'path_not_allowed', matchedRule: null }),
        ),
      ).flat(),
    bytes_out_spike: (m) => m.observe(event(AFTER, { method: 'GET', bytesOut: 11 * MIN_BYTES_BASELINE })),
    forbidden_address: (m) =>
      m.observe(event(AFTER, { decision: 'denied', reason: 'forbidden_address', matchedRule: null })),
    new_method: (m) => m.observe(event(AFTER, { method: 'POST' })),
  };

  it('has a case for every detection', () => {
    expect(Object.keys(raises).sort()).toEqual([...DETECTIONS].sort());
  });

  for (const detection of DETECTIONS) {
    it(`raises ${detection} once, with its response, its words and its evidence`, () => {
      const findings = raises[detection](learnt()).filter((f) => f.detection === detection);
      expect(findings).toHaveLength(1);
      const [found] = findings as [Finding];
      expect(found.subject).toEqual({ tenant: 'acme', agent: 'billing-agent', user: null });
      expect(found.summary).toMatch(/^agent billing-agent /);
      expect(found.evidence.requestIds.length).toBeGreaterThan(0);
      expect(found.evidence.jtis).toEqual(['j1']);
    });
  }

  it('says nothing of first contacts during the learning period', () => {
    const monitor = new Monitor(() => EVERYTHING);
    const findings = ['a', 'b', 'c', 'd', 'e', 'f'].flatMap((h, i) =>
      monitor.observe(event(i * 1000, { host: `${h}.example`, method: i % 2 ? 'POST' : 'GET' })),
    );
    expect(findings).toEqual([]);
  });

  it('alerts new_destination once per new host, refused or not', () => {
    const monitor = learnt();
    const first = monitor.observe(
      event(AFTER, { host: 'paste.example', decision: 'denied', reason: 'no_matching_rule' }),
    );
    const again = monitor.observe(event(AFTER + 1000, { host: 'paste.example' }));
    const other = monitor.observe(event(AFTER + 2000, { host: 'other.example' }));
    expect(names(first)).toEqual(['new_destination']);
    expect(first[0]?.summary).toContain('refused: no_matching_rule');
    expect(names(again)).toEqual([]);
    expect(names(other)).toEqual(['new_destination']);
  });

  it('counts a burst only within its window: five new hosts over five minutes are no burst', () => {
    const monitor = learnt();
    const findings = ['a', 'b', 'c', 'd', 'e'].flatMap((h, i) =>
      monitor.observe(event(AFTER + i * MINUTE, { host: `${h}.example` })),
    );
    expect(names(findings)).not.toContain('destination_burst');
  });

  it('names every host of a burst and the tokens that made it', () => {
    const monitor = learnt();
    const findings = ['a', 'b', 'c', 'd', 'e'].flatMap((h, i) =>
      monitor.observe(event(AFTER + i * 1000, { host: `${h}.example`, jti: `j${i % 2}` })),
    );
    const burst = findings.find((f) => f.detection === 'destination_burst');
    expect(burst?.evidence.hosts).toEqual(['a.example', 'b.example', 'c.example', 'd.example', 'e.example']);
    expect(burst?.evidence).toMatchObject({ count: 5, threshold: 5, windowMs: MINUTE });
    expect([...(burst?.evidence.jtis ?? [])].sort()).toEqual(['j0', 'j1']);
  });

  it('holds 19 denials a minute apart from 20 within one', () => {
    const monitor = learnt();
    const denied = { decision: 'denied' as const, reason: 'no_matching_rule', matchedRule: null };
    const spread = Array.from({ length: 19 }, (_, i) =>
      monitor.observe(event(AFTER + i * 100, denied)),
    ).flat();
    expect(names(spread)).not.toContain('denial_spike');
    const late = monitor.observe(event(AFTER + 2 * MINUTE, denied));
    expect(names(late)).not.toContain('denial_spike');
  });

  it('measures bytes out against the agent’s own usual rate, not a fixed size', () => {
    // A heavy sender: 1 MB every 10 s through learning, so 30 MB per 5 minutes is its normal.
    const heavy = new Monitor(() => EVERYTHING);
    for (let at = 0; at <= LEARNING; at += 10_000) heavy.observe(event(at, { bytesOut: 1_000_000 }));
    expect(names(heavy.observe(event(AFTER, { bytesOut: 2_000_000 })))).not.toContain('bytes_out_spike');
    const spike = heavy.observe(event(AFTER + 1000, { bytesOut: 400_000_000 }));
    expect(names(spike)).toContain('bytes_out_spike');
    // The window holds what it sent in the last five minutes: 24 MB of its usual traffic and 402 MB.
    expect(spike[0]?.summary).toMatch(
      /sent 426\.0 MB within 5 minutes, more than 10× its usual 30\.7 MB per 5 minutes$/,
    );
  });

  it('does not watch a tenant without a monitoring policy, nor a request without a token', () => {
    const monitor = learnt();
    expect(monitor.observe(event(AFTER, { tenant: 'globex', host: 'new.example' }))).toEqual([]);
    expect(monitor.observe(event(AFTER, { tenant: null, agent: null, host: 'new.example' }))).toEqual([]);
  });

  it('takes the gateway’s events as they are published', () => {
    const monitor = learnt();
    const published: ExchangeEvent = {
      ...event(AFTER, { host: 'paste.example' }),
      kind: 'request',
      tunnel: null,
      delegationChain: null,
      scheme: 'https',
      port: 443,
      path: '/upload',
      reason: null,
      resolvedAddress: '203.0.113.7',
      inspected: true,
      status: 200,
      bytesIn: 10,
      durationMs: 3,
      decisionMs: 1,
      upstreamMs: 1,
      detail: null,
    };
    expect(names(monitor.observe(published))).toEqual(['new_destination']);
  });

  it('does not run a detection the policy leaves out', () => {
    const monitor = learnt({ learningPeriodMs: LEARNING, forbiddenAddress: { response: 'alert' } });
    expect(monitor.observe(event(AFTER, { host: 'new.example', method: 'DELETE' }))).toEqual([]);
  });
});

describe('incidents', () => {
  it('are one finding for a condition that keeps holding, and a new one after a quiet window', () => {
    const monitor = learnt();
    const denied = { decision: 'denied' as const, reason: 'no_matching_rule', matchedRule: null };
    const flood = Array.from({ length: 200 }, (_, i) =>
      monitor.observe(event(AFTER + i * 100, denied)),
    ).flat();
    expect(names(flood).filter((n) => n === 'denial_spike')).toHaveLength(1);
    const later = AFTER + 200 * 100 + 2 * MINUTE;
    const second = Array.from({ length: 20 }, (_, i) =>
      monitor.observe(event(later + i * 100, denied)),
    ).flat();
    expect(names(second).filter((n) => n === 'denial_spike')).toHaveLength(1);
  });

  it('tell forbidden_address again only after QUIET_MS', () => {
    const monitor = learnt();
    const forbidden = { decision: 'denied' as const, reason: 'forbidden_address', matchedRule: null };
    expect(names(monitor.observe(event(AFTER, forbidden)))).toContain('forbidden_address');
    expect(names(monitor.observe(event(AFTER + QUIET_MS / 2, forbidden)))).not.toContain('forbidden_address');
    // Still quiet for QUIET_MS after the latest firing above, then told again.
    const next = AFTER + QUIET_MS / 2 + QUIET_MS + 1;
    expect(names(monitor.observe(event(next, forbidden)))).toContain('forbidden_address');
  });

  it('are told once for an agent acting for a user, not once per baseline', () => {
    const monitor = learnt();
    const findings = ['a', 'b', 'c', 'd', 'e'].flatMap((h, i) =>
      monitor.observe(event(AFTER + i * 1000, { host: `${h}.example`, subject: 'alice@acme.example' })),
    );
    expect(names(findings).filter((n) => n === 'destination_burst')).toHaveLength(1);
    expect(findings.find((f) => f.detection === 'destination_burst')?.subject.user).toBeNull();
  });
});

describe('baselines', () => {
  it('are learnt per agent and per agent acting for a user', () => {
    const monitor = learnt();
    monitor.observe(event(AFTER, { subject: 'alice@acme.example', host: 'api.stripe.com' }));
    const alice = monitor.baseline({ tenant: 'acme', agent: 'billing-agent', user: 'alice@acme.example' });
    expect(alice?.requests).toBe(1);
    expect(monitor.baseline({ tenant: 'acme', agent: 'billing-agent', user: null })?.hosts.size).toBe(2);
  });

  it('carry over a restart: a restored baseline is past learning and knows its hosts', () => {
    const before = learnt();
    const key = { tenant: 'acme', agent: 'billing-agent', user: null };
    const snapshot = JSON.parse(JSON.stringify(before.baseline(key)?.snapshot()));
    const after = new Monitor(() => EVERYTHING);
    after.restore(key, snapshot);
    expect(after.observe(event(AFTER, { host: 'api.stripe.com' }))).toEqual([]);
    expect(names(after.observe(event(AFTER + 1000, { host: 'paste.example' })))).toEqual(['new_destination']);
  });

  it('keep their windows bounded by the policy whatever the traffic', () => {
    fc.assert(
      fc.property(
        fc.array(
          fc.record({ gap: fc.integer({ min: 0, max: 5_000 }), denied: fc.boolean(), host: fc.nat(50) }),
          {
            maxLength: 300,
          },
        ),
        (steps) => {
          const monitor = learnt();
          let at = AFTER;
          for (const step of steps) {
            at += step.gap;
            monitor.observe(
              event(at, {
                host: `h${step.host}.example`,
                decision: step.denied ? 'denied' : 'allowed',
                reason: step.denied ? 'no_matching_rule' : null,
              }),
            );
          }
          const baseline = monitor.baseline({ tenant: 'acme', agent: 'billing-agent', user: null });
          for (const m of [...(baseline?.newHosts ?? []), ...(baseline?.recentDenials ?? [])]) {
            expect(at - m.time).toBeLessThan(MINUTE);
          }
          const sum = (baseline?.recentBytes ?? []).reduce((n, s) => n + s.bytes, 0);
          expect(baseline?.recentBytesSum).toBe(sum);
        },
      ),
      { numRuns: 100 },
    );
  });
});

describe('policy values', () => {
  it.each([
    ['30s', 30_000],
    ['1m', 60_000],
    ['24h', 86_400_000],
    ['0s', 0],
  ])('reads the duration %s', (text, ms) => {
    expect(parseDuration(text)).toBe(ms);
  });

  it.each(['1d', '1.5h', ' 1m', '1M', '', 'h', '-1s'])('refuses the duration %j', (text) => {
    expect(parseDuration(text)).toBeUndefined();
  });

  it.each([
    ['50MB', 50_000_000],
    ['10kB', 10_000],
    ['2GB', 2_000_000_000],
    ['512', 512],
    [512, 512],
  ] as const)('reads the size %j in decimal units', (text, size) => {
    expect(parseSize(text)).toBe(size);
  });

  it.each(['50mb', '1.5MB', '5 MB', 'MB', '50MiB', -1, 1.5])('refuses the size %j', (text) => {
    expect(parseSize(text)).toBeUndefined();
  });
});
