// What reins has learnt of one subject's normal behaviour (an agent, or an agent acting for one
// user): the hosts it talks to and with which methods, when it was first and last seen, its totals,
// and short sliding windows of what it did lately (new hosts, denials, bytes out) for the
// detections. Learnt incrementally from decision events, one at a time, in the order they come.
// Pure: time comes in with each event; nothing here reads a clock or does I/O. `snapshot()` and
// `Baseline.restore()` carry what lasts (not the windows) across restarts and processes.

/** Whom a baseline describes. `user` is set for delegated tokens (the token's subject). */
export interface SubjectKey {
  readonly tenant: string;
  readonly agent: string;
  readonly user: string | null;
}

/** The facts of one decision event that baselines learn from (events.ts's ExchangeEvent has them). */
export interface Observed {
  readonly time: number;
  readonly requestId: string;
  readonly jti: string | null;
  readonly method: string | null;
  readonly host: string | null;
  readonly decision: 'allowed' | 'denied';
  readonly reason: string | null;
  readonly matchedRule: string | null;
  readonly bytesOut: number;
}

export interface HostSeen {
  readonly firstSeen: number;
  lastSeen: number;
  requests: number;
  /** Methods seen toward this host, upper case, in the order first seen. */
  readonly methods: string[];
  /** The rule that last allowed a request to it; null while it was only ever refused. */
  rule: string | null;
}

/** What one event was, for this subject: its first contact with a host, or with a method on one. */
export interface Novelty {
  /** Still learning: first contacts are recorded, never reported. */
  readonly learning: boolean;
  readonly newHost: boolean;
  readonly newMethod: boolean;
}

/** One event kept in a sliding window: enough to name it in a finding's evidence. */
export interface Mark {
  readonly time: number;
  readonly requestId: string;
  readonly jti: string | null;
  readonly host: string | null;
}

/** The bytes one token sent in one second; `requestId` is the latest of them. */
export interface BytesSecond {
  readonly time: number;
  readonly jti: string | null;
  requestId: string;
  bytes: number;
}

export interface BaselineSnapshot {
  readonly firstSeen: number;
  readonly lastSeen: number;
  readonly requests: number;
  readonly denials: number;
  readonly bytesOut: number;
  readonly hosts: Record<string, HostSeen>;
}

/** How far back each sliding window looks (0: not kept). */
export interface Windows {
  readonly newHostsMs: number;
  readonly denialsMs: number;
  readonly bytesMs: number;
}

/** A window keeps at most this many marks; a flood's evidence names the latest of them. */
const MAX_MARKS = 10_000;

export class Baseline {
  firstSeen: number;
  lastSeen: number;
  requests = 0;
  denials = 0;
  bytesOut = 0;
  readonly hosts = new Map<string, HostSeen>();
  /** Hosts first contacted after learning, within Windows.newHostsMs, in time order. */
  readonly newHosts: Mark[] = [];
  /** Denials within Windows.denialsMs. */
  readonly recentDenials: Mark[] = [];
  /**
   * Bytes out within Windows.bytesMs, one entry per second and token (a flood of small requests
   * keeps the window bounded without losing a byte of the sum).
   */
  readonly recentBytes: BytesSecond[] = [];
  #recentBytesSum = 0;

  constructor(
    readonly key: SubjectKey,
    firstSeen: number,
  ) {
    this.firstSeen = firstSeen;
    this.lastSeen = firstSeen;
  }

  static restore(key: SubjectKey, snapshot: BaselineSnapshot): Baseline {
    const baseline = new Baseline(key, snapshot.firstSeen);
    baseline.lastSeen = snapshot.lastSeen;
    baseline.requests = snapshot.requests;
    baseline.denials = snapshot.denials;
    baseline.bytesOut = snapshot.bytesOut;
    for (const [host, seen] of Object.entries(snapshot.hosts)) {
      baseline.hosts.set(host, { ...seen, methods: [...seen.methods] });
    }
    return baseline;
  }

  snapshot(): BaselineSnapshot {
    const hosts: Record<string, HostSeen> = {};
    for (const [host, seen] of this.hosts) hosts[host] = { ...seen, methods: [...seen.methods] };
    return {
      firstSeen: this.firstSeen,
      lastSeen: this.lastSeen,
      requests: this.requests,
      denials: this.denials,
      bytesOut: this.bytesOut,
      hosts,
    };
  }

  /** Bytes out within Windows.bytesMs of the last event observed. */
  get recentBytesSum(): number {
    return this.#recentBytesSum;
  }

  /** Learns one event. `learningPeriodMs` decides whether a first contact is news. */
  observe(event: Observed, learningPeriodMs: number, windows: Windows): Novelty {
    const time = Math.max(event.time, this.lastSeen);
    const learning = time - this.firstSeen < learningPeriodMs;
    this.lastSeen = time;
    this.requests++;
    this.bytesOut += event.bytesOut;
    const mark: Mark = {
      time,
      requestId: event.requestId,
      jti: event.jti,
      host: event.host,
    };
    let newHost = false;
    let newMethod = false;
    if (event.host !== null) {
      const method = (event.method ?? '').toUpperCase();
      const seen = this.hosts.get(event.host);
      if (seen === undefined) {
        newHost = true;
        this.hosts.set(event.host, {
          firstSeen: time,
          lastSeen: time,
          requests: 1,
          methods: method === '' ? [] : [method],
          rule: event.decision === 'allowed' ? event.matchedRule : null,
        });
        if (!learning && windows.newHostsMs > 0) push(this.newHosts, mark);
      } else {
        seen.lastSeen = time;
        seen.requests++;
        if (event.decision === 'allowed' && event.matchedRule !== null) seen.rule = event.matchedRule;
        if (method !== '' && !seen.methods.includes(method)) {
          seen.methods.push(method);
          newMethod = true;
        }
      }
    }
    if (event.decision === 'denied') {
      this.denials++;
      if (windows.denialsMs > 0) push(this.recentDenials, mark);
    }
    if (event.bytesOut > 0 && windows.bytesMs > 0) {
      const second = time - (time % 1000);
      const last = this.recentBytes.at(-1);
      if (last !== undefined && last.time === second && last.jti === event.jti) {
        last.bytes += event.bytesOut;
        last.requestId = event.requestId;
      } else {
        this.recentBytes.push({
          time: second,
          jti: event.jti,
          requestId: event.requestId,
          bytes: event.bytesOut,
        });
      }
      this.#recentBytesSum += event.bytesOut;
    }
    trimBefore(this.newHosts, time - windows.newHostsMs);
    trimBefore(this.recentDenials, time - windows.denialsMs);
    // The sum stays exact: what leaves the window leaves the sum.
    const bytesFrom = time - windows.bytesMs;
    while (this.recentBytes.length > 0 && (this.recentBytes[0] as BytesSecond).time <= bytesFrom) {
      this.#recentBytesSum -= (this.recentBytes.shift() as BytesSecond).bytes;
    }
    return { learning, newHost, newMethod };
  }
}

function push(window: Mark[], mark: Mark): void {
  window.push(mark);
  if (window.length > MAX_MARKS) window.shift();
}

function trimBefore(window: Mark[], before: number): void {
  let drop = 0;
  while (drop < window.length && (window[drop] as Mark).time <= before) drop++;
  if (drop > 0) window.splice(0, drop);
}
