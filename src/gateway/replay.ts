// Replay ("what if", `reins policy plan DIR --replay 24h`): the recorded decisions of a period,
// judged again under the applied policy and under the planned one, so an operator tightening a
// policy sees what would break before applying it. Pure: rows and models in, a report out (the
// rows may come as an async iterable, read page by page by replay-read.ts).
//
// Each request is judged by the gateway's own decide(), as a token issued under that policy would
// carry it (the token's grant = the agent's registration): whether the *policy* lets it out. What
// the policy does not decide is left as it was: the address checks (forbidden_address — the
// operator's openings, not the policy's), and a CONNECT to an origin granted only in part (it is
// inspected, and the requests inside it have rows of their own). A request is counted as newly
// refused when the applied policy lets it out and the planned one does not, and newly allowed the
// other way round; requests without a verified token (407s) belong to no agent and are left out.
import { normaliseTarget, type Target } from '../egress/index.ts';
import type { PolicyModel } from '../policy/model.ts';
import { decide } from './decide.ts';
import { buildPolicyView, type GatewayPolicyView } from './policy-view.ts';

/** An audit row, as far as replay reads it (audit-read.ts's AuditRecord is one). */
export interface ReplayedRow {
  readonly tenant: string | null;
  readonly agent: string | null;
  readonly method: string | null;
  readonly scheme: string | null;
  readonly host: string | null;
  readonly port: number | null;
  readonly path: string | null;
}

/** How many requests to one destination (method and origin) change, with a few of their paths. */
export interface ChangedDestination {
  /** `METHOD scheme://host:port`, e.g. `POST https://api.stripe.com:443`. */
  readonly destination: string;
  readonly requests: number;
  /** Up to EXAMPLES distinct paths, in the order first seen. */
  readonly paths: readonly string[];
}

export interface AgentReplay {
  readonly tenant: string;
  readonly agent: string;
  readonly newlyRefused: readonly ChangedDestination[];
  readonly newlyAllowed: readonly ChangedDestination[];
}

export interface ReplayReport {
  /** Rows judged (those with an agent and a readable destination). */
  readonly judged: number;
  /** Agents with at least one change, sorted by tenant then agent. */
  readonly agents: readonly AgentReplay[];
}

const EXAMPLES = 3;

/** Judges `rows` under `applied` and `planned`; see the file's comment for what is counted. */
export async function replayDecisions(
  rows: Iterable<ReplayedRow> | AsyncIterable<ReplayedRow>,
  applied: PolicyModel,
  planned: PolicyModel,
): Promise<ReplayReport> {
  const before = buildPolicyView(applied, null);
  const after = buildPolicyView(planned, null);
  const agents = new Map<string, { tenant: string; agent: string; refused: Tally; allowed: Tally }>();
  let judged = 0;
  for await (const row of rows) {
    if (row.tenant === null || row.agent === null) continue;
    const read = targetOf(row);
    if (read === null) continue;
    judged += 1;
    const was = letsOut(before, row.tenant, row.agent, read);
    const will = letsOut(after, row.tenant, row.agent, read);
    if (was === will) continue;
    const key = `${row.tenant}\0${row.agent}`;
    let entry = agents.get(key);
    if (entry === undefined) {
      entry = { tenant: row.tenant, agent: row.agent, refused: new Map(), allowed: new Map() };
      agents.set(key, entry);
    }
    count(was ? entry.refused : entry.allowed, read);
  }
  return {
    judged,
    agents: [...agents.values()]
      .sort((a, b) => compare(a.tenant, b.tenant) || compare(a.agent, b.agent))
      .map(({ tenant, agent, refused, allowed }) => ({
        tenant,
        agent,
        newlyRefused: listed(refused),
        newlyAllowed: listed(allowed),
      })),
  };
}

interface Read {
  readonly target: Target;
  readonly connect: boolean;
  readonly destination: string;
  readonly path: string;
}

type Tally = Map<string, { requests: number; paths: string[] }>;

function targetOf(row: ReplayedRow): Read | null {
  if (row.method === null || row.host === null) return null;
  const connect = row.method === 'CONNECT';
  const scheme = row.scheme ?? (connect ? 'https' : null);
  if (scheme === null) return null;
  // Rows keep an IPv6 literal without its brackets.
  const host = row.host.includes(':') && !row.host.startsWith('[') ? `[${row.host}]` : row.host;
  const path = connect ? '/' : (row.path ?? '/');
  const normalised = normaliseTarget({ method: row.method, scheme, host, port: row.port, path });
  if (!normalised.ok) return null;
  const port = row.port ?? (scheme === 'https' ? 443 : 80);
  return {
    target: normalised.target,
    connect,
    destination: `${row.method} ${scheme}://${host}:${port}`,
    path: connect ? '' : path,
  };
}

/** Whether `view`'s policy lets the request out, for a token issued under it. */
function letsOut(view: GatewayPolicyView, tenant: string, agent: string, read: Read): boolean {
  const registration = view.registration(tenant, agent);
  if (registration === undefined) return false;
  const decision = decide({
    token: { tenant, agent, egress: registration },
    registration,
    quarantined: false,
    ceiling: view.ceiling(tenant),
    ownership: view.ownership(tenant),
    target: read.target,
    connect: read.connect,
    openings: [],
  });
  if (decision.verdict !== 'deny') return true;
  return decision.reason === 'forbidden_address' || decision.reason === 'connect_needs_whole_origin';
}

function count(tally: Tally, read: Read): void {
  let entry = tally.get(read.destination);
  if (entry === undefined) {
    entry = { requests: 0, paths: [] };
    tally.set(read.destination, entry);
  }
  entry.requests += 1;
  if (read.path !== '' && entry.paths.length < EXAMPLES && !entry.paths.includes(read.path))
    entry.paths.push(read.path);
}

function listed(tally: Tally): ChangedDestination[] {
  return [...tally]
    .map(([destination, { requests, paths }]) => ({ destination, requests, paths }))
    .sort((a, b) => b.requests - a.requests || compare(a.destination, b.destination));
}

function compare(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** The report as `reins policy plan --replay` prints it after the plan. */
export function formatReplay(report: ReplayReport, period: string): string {
  const lines = [
    `Replay of the last ${period}: ${report.judged} recorded requests judged under both policies.`,
  ];
  if (report.agents.length === 0) {
    lines.push('No request would be decided differently.');
    return `${lines.join('\n')}\n`;
  }
  for (const { tenant, agent, newlyRefused, newlyAllowed } of report.agents) {
    lines.push('', `tenant ${tenant}, agent ${agent}:`);
    for (const d of newlyRefused)
      lines.push(`  - would be refused: ${d.destination}  ${d.requests} requests${paths(d)}`);
    for (const d of newlyAllowed)
      lines.push(`  + would be allowed: ${d.destination}  ${d.requests} requests${paths(d)}`);
  }
  return `${lines.join('\n')}\n`;
}

function paths(d: ChangedDestination): string {
  return d.paths.length === 0 ? '' : ` (e.g. ${d.paths.join(', ')})`;
}
