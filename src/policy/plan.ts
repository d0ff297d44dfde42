// planChanges: what applying `after` over `before` would change, principal by principal. The
// point is the effective egress: for every agent, app and user rule, which destinations appear
// and which disappear (after the ceiling), so a reviewer sees what the apply really grants.
// Monitoring (per tenant) and budgets (per agent) are shown setting by setting, in the policy's
// own units; a webhook by its URL and the name of its secret's variable, never a secret.
// Pure: both models come in as values (the applied one read from the database by the caller).
import { createHash } from 'node:crypto';
import { formatRule, parseRule, type Rule, simplifyRules } from '../egress/index.ts';
import { canonicalJson } from './content-hash.ts';
import { compareText } from './diagnostic.ts';
import type {
  AgentModel,
  BudgetModel,
  ClientAuthModel,
  MonitoringModel,
  PolicyModel,
  TenantModel,
  TrustedIssuerModel,
} from './model.ts';
import { formatDuration, formatSize } from './quantities.ts';
import { renderMatch } from './user-match.ts';

export type EntryKind =
  | 'tenant'
  | 'monitoring'
  | 'integration'
  | 'agent'
  | 'app'
  | 'trusted issuer'
  | 'user rule';
export type Action = 'add' | 'remove' | 'change';

export interface PlanLine {
  readonly sign: '+' | '-' | '~';
  readonly text: string;
}

export interface PlanEntry {
  readonly action: Action;
  readonly kind: EntryKind;
  readonly tenant: string;
  /** The principal's name; the tenant id for kinds 'tenant' and 'monitoring'. */
  readonly name: string;
  /** For an added entry: its attributes in one line (auth, lifetime, …). */
  readonly note: string | null;
  readonly lines: readonly PlanLine[];
}

export interface Plan {
  readonly entries: readonly PlanEntry[];
  readonly add: number;
  readonly change: number;
  readonly remove: number;
}

/** How an entry is compared: named rule sets (diffed rule by rule) and attributes (as text). */
interface View {
  readonly sets: Readonly<Record<string, readonly string[]>>;
  readonly attrs: Readonly<Record<string, string>>;
}

const EMPTY_TENANT = (id: string): TenantModel => ({
  id,
  maxTokenTtl: 0,
  delegationDepth: 0,
  ceiling: null,
  owns: [],
  federation: [],
  integrations: [],
  agents: [],
  apps: [],
  trustedIssuers: [],
  users: [],
  monitoring: null,
});

export function planChanges(before: PolicyModel, after: PolicyModel): Plan {
  const entries: PlanEntry[] = [];
  const ids = [...new Set([...before.tenants, ...after.tenants].map((t) => t.id))].sort(compareText);
  for (const id of ids) {
    const old = before.tenants.find((t) => t.id === id);
    const now = after.tenants.find((t) => t.id === id);
    const action: Action = !old ? 'add' : !now ? 'remove' : 'change';
    const a = old ?? EMPTY_TENANT(id);
    const b = now ?? EMPTY_TENANT(id);
    const tenantEntry = diffEntry('tenant', id, id, old ? tenantView(a) : null, now ? tenantView(b) : null);
    if (tenantEntry) entries.push({ ...tenantEntry, action });
    else if (action !== 'change')
      entries.push({ action, kind: 'tenant', tenant: id, name: id, note: null, lines: [] });
    const monitoring = monitoringEntry(id, a.monitoring, b.monitoring);
    if (monitoring) entries.push(monitoring);

    const diff = <T>(
      kind: EntryKind,
      pick: (t: TenantModel) => readonly T[],
      key: (x: T) => string,
      view: (x: T, t: TenantModel) => View,
    ) => {
      const olds = new Map(pick(a).map((x) => [key(x), x]));
      const nows = new Map(pick(b).map((x) => [key(x), x]));
      for (const name of [...new Set([...olds.keys(), ...nows.keys()])].sort(compareText)) {
        const x = olds.get(name);
        const y = nows.get(name);
        const entry = diffEntry(
          kind,
          id,
          name,
          x === undefined ? null : view(x, a),
          y === undefined ? null : view(y, b),
        );
        if (entry) entries.push(entry);
      }
    };
    diff(
      'integration',
      (t) => t.integrations,
      (i) => i.name,
      (i) => ({ sets: { '': i.rules }, attrs: {} }),
    );
    diff(
      'agent',
      (t) => t.agents,
      (x) => x.clientId,
      agentView,
    );
    diff(
      'app',
      (t) => t.apps,
      (x) => x.clientId,
      (app, t) => ({
        sets: { '': reachOf(app.mayDelegateTo, t.agents) },
        attrs: { auth: authText(app.auth), may_delegate_to: listText(app.mayDelegateTo) },
      }),
    );
    diff(
      'trusted issuer',
      (t) => t.trustedIssuers,
      (i) => i.issuer,
      issuerView,
    );
    diff(
      'user rule',
      (t) => t.users,
      (u) => u.id,
      (u) => ({
        sets: { '': u.effectiveEgress },
        attrs: { match: renderMatch(u.match) },
      }),
    );
  }
  const count = (action: Action) => entries.filter((e) => e.action === action).length;
  return { entries, add: count('add'), change: count('change'), remove: count('remove') };
}

function diffEntry(
  kind: EntryKind,
  tenant: string,
  name: string,
  before: View | null,
  after: View | null,
): PlanEntry | null {
  if (!before && !after) return null;
  if (!before && after) {
    const lines = setLines(after.sets, '+');
    return { action: 'add', kind, tenant, name, note: noteOf(after.attrs), lines };
  }
  if (before && !after)
    return { action: 'remove', kind, tenant, name, note: null, lines: setLines(before.sets, '-') };
  const a = before as View;
  const b = after as View;
  const lines: PlanLine[] = [];
  for (const set of [...new Set([...Object.keys(a.sets), ...Object.keys(b.sets)])]) {
    const olds = a.sets[set] ?? [];
    const nows = b.sets[set] ?? [];
    const label = set === '' ? '' : `${set}: `;
    for (const rule of olds) if (!nows.includes(rule)) lines.push({ sign: '-', text: `${label}${rule}` });
    for (const rule of nows) if (!olds.includes(rule)) lines.push({ sign: '+', text: `${label}${rule}` });
  }
  for (const attr of [...new Set([...Object.keys(a.attrs), ...Object.keys(b.attrs)])]) {
    const old = a.attrs[attr] ?? 'none';
    const now = b.attrs[attr] ?? 'none';
    if (old !== now) lines.push({ sign: '~', text: `${attr}: ${old} → ${now}` });
  }
  return lines.length === 0 ? null : { action: 'change', kind, tenant, name, note: null, lines };
}

function setLines(sets: Readonly<Record<string, readonly string[]>>, sign: '+' | '-'): PlanLine[] {
  return Object.entries(sets).flatMap(([set, rules]) =>
    rules.map((rule) => ({ sign, text: set === '' ? rule : `${set}: ${rule}` })),
  );
}

function noteOf(attrs: Readonly<Record<string, string>>): string | null {
  const parts = Object.entries(attrs).map(([key, value]) => `${key} ${value}`);
  return parts.length === 0 ? null : parts.join('; ');
}

function tenantView(t: TenantModel): View {
  const sets: Record<string, readonly string[]> = { ceiling: t.ceiling ?? [], owns: t.owns };
  for (const f of t.federation) sets[`federation to ${f.tenant}`] = f.egress;
  return {
    sets,
    attrs: {
      max_token_ttl: `${t.maxTokenTtl}s`,
      delegation_depth: String(t.delegationDepth),
      egress_ceiling:
        t.ceiling === null ? 'none' : `${t.ceiling.length} rule${t.ceiling.length === 1 ? '' : 's'}`,
    },
  };
}

function agentView(agent: AgentModel): View {
  return {
    sets: { '': agent.effectiveEgress },
    attrs: {
      auth: authText(agent.auth),
      token_ttl: `${agent.tokenTtl}s`,
      may_act: listText(agent.mayAct),
      // Absent when unset, so a new agent's note stays short and a change reads `none → …`.
      ...(agent.budget && { budget: budgetText(agent.budget) }),
    },
  };
}

function budgetText(budget: BudgetModel): string {
  const limits: string[] = [];
  if (budget.requestsPerMinute !== null) limits.push(`${budget.requestsPerMinute} requests/min`);
  if (budget.bytesOutPerHour !== null) limits.push(`${formatSize(budget.bytesOutPerHour)} out/hour`);
  return listText(limits);
}

/**
 * The tenant's monitoring as one entry with a line per setting: `+`/`-` for a setting (or a
 * whole `monitoring:`) that appears or disappears, `~ key: old → new` for one that changed.
 */
function monitoringEntry(
  tenant: string,
  before: MonitoringModel | null,
  after: MonitoringModel | null,
): PlanEntry | null {
  if (before === null && after === null) return null;
  const olds = before === null ? {} : monitoringSettings(before);
  const nows = after === null ? {} : monitoringSettings(after);
  const lines: PlanLine[] = [];
  for (const key of [...new Set([...Object.keys(olds), ...Object.keys(nows)])]) {
    const old = olds[key];
    const now = nows[key];
    if (old === now) continue;
    if (old === undefined) lines.push({ sign: '+', text: `${key}: ${now}` });
    else if (now === undefined) lines.push({ sign: '-', text: `${key}: ${old}` });
    else lines.push({ sign: '~', text: `${key}: ${old} → ${now}` });
  }
  if (lines.length === 0) return null;
  const action: Action = before === null ? 'add' : after === null ? 'remove' : 'change';
  return { action, kind: 'monitoring', tenant, name: tenant, note: null, lines };
}

/** Policy key → its setting as text, in the order of the policy file. */
function monitoringSettings(m: MonitoringModel): Record<string, string> {
  const within = (ms: number) => `within ${formatDuration(ms)}`;
  const count = (n: number, one: string, many: string) => `${n} ${n === 1 ? one : many}`;
  const settings: Record<string, string> = { learning_period: formatDuration(m.learningPeriodMs) };
  if (m.newDestination) settings.new_destination = m.newDestination.response;
  if (m.destinationBurst) {
    const { response, newHosts, withinMs } = m.destinationBurst;
    settings.destination_burst = `${response} on ${count(newHosts, 'new host', 'new hosts')} ${within(withinMs)}`;
  }
  if (m.denialSpike) {
    const { response, denials, withinMs } = m.denialSpike;
    settings.denial_spike = `${response} on ${count(denials, 'denial', 'denials')} ${within(withinMs)}`;
  }
  if (m.bytesOutSpike) {
    const { response, factor, withinMs } = m.bytesOutSpike;
    settings.bytes_out_spike = `${response} on ${factor}× the usual bytes out ${within(withinMs)}`;
  }
  if (m.forbiddenAddress) settings.forbidden_address = m.forbiddenAddress.response;
  if (m.newMethod) settings.new_method = m.newMethod.response;
  if (m.webhook) settings.webhook = `${m.webhook.url} with secret_env ${m.webhook.secretEnv}`;
  return settings;
}

function issuerView(issuer: TrustedIssuerModel): View {
  return {
    sets: {},
    attrs: {
      keys: issuer.jwks ? `jwks (${keysText(issuer.jwks)})` : `jwks_uri ${issuer.jwksUri}`,
      audience: listText(issuer.audience),
      claims: `sub=${issuer.subjectClaim}, groups=${issuer.groupsClaim}, roles=${issuer.rolesClaim}`,
      algorithms: listText(issuer.algorithms),
    },
  };
}

function authText(auth: ClientAuthModel): string {
  if (auth.jwks) return `${auth.method} with jwks (${keysText(auth.jwks)})`;
  if (auth.jwksUri) return `${auth.method} with jwks_uri ${auth.jwksUri}`;
  if (auth.secretEnv) return `${auth.method} with secret_env ${auth.secretEnv}`;
  return `${auth.method} with secret_hash #${fingerprint(auth.secretHash)}`;
}

/** Number of keys and a short fingerprint, so that replacing a key shows as a change. */
function keysText(jwks: { keys: readonly unknown[] }): string {
  return `${jwks.keys.length} key${jwks.keys.length === 1 ? '' : 's'} #${fingerprint(jwks)}`;
}

function fingerprint(value: unknown): string {
  return createHash('sha256').update(canonicalJson(value)).digest('hex').slice(0, 8);
}

function listText(items: readonly string[]): string {
  return items.length === 0 ? 'none' : items.join(', ');
}

/** What tokens obtained through an app can reach at most: the union of its agents' effective egress. */
function reachOf(agentIds: readonly string[], agents: readonly AgentModel[]): string[] {
  const rules: Rule[] = [];
  for (const id of agentIds) {
    for (const text of agents.find((a) => a.clientId === id)?.effectiveEgress ?? []) {
      const parsed = parseRule(text);
      if (parsed.ok) rules.push(parsed.rule);
    }
  }
  return simplifyRules(rules).map(formatRule);
}
