// The gateway's one decision: may this request (or CONNECT) go out, and to which address?
//
// Pure: no I/O, no clock, no logging, and it never throws. A denial is a value with a reason
// from the closed list in reasons.ts; a malformed input is the denial `decision_failed`, never
// an exception and never an allow. The proxy around it is small: decide; on `resolve`, look the
// name up once and decide again with the answers; publish the decision for audit and metrics;
// then dial the pinned address or answer 403.
//
// The checks run in this order, each a small named function below:
//   1. the agent: quarantined, or no longer in the applied policy;
//   2. ownership: another tenant owns the destination and does not federate it to the caller;
//   3. the grant: token ∩ current registration ∩ tenant ceiling must match the request
//      (for CONNECT: must grant the origin whole);
//   4. resolution: only now may a name be looked up;
//   5. the addresses: every answer public or opened; none owned by another tenant; pin one.
import { formatAddress, isMapped, parseAddress } from '../egress/address.ts';
import { hostMatches } from '../egress/host.ts';
import {
  classifyAddress,
  findMatch,
  formatRule,
  intersectRules,
  isOpened,
  type Opening,
  type Rule,
  type RuleSet,
  type Target,
} from '../egress/index.ts';
import { pathMatches } from '../egress/path.ts';
import type { DenyReason } from './reasons.ts';

export interface Ownership {
  readonly tenant: string;
  readonly owns: RuleSet;
  /** What this owner federates to the caller's tenant; null = nothing. */
  readonly federatedToCaller: RuleSet | null;
}

export interface DecisionInput {
  /**
   * Verified token facts: tenant, acting agent (act.sub of a delegated token, else client_id), the
   * token's egress (from authorization_details), compiled once when the token was first verified.
   */
  readonly token: { readonly tenant: string; readonly agent: string; readonly egress: RuleSet };
  /** The agent's current effective registration (already ∩ its tenant's ceiling), or null when the applied policy no longer has it. */
  readonly registration: RuleSet | null;
  readonly quarantined: boolean;
  /** The caller tenant's ceiling; null = none. */
  readonly ceiling: RuleSet | null;
  /** Every OTHER tenant's owned destinations and what it federates to the caller's tenant. */
  readonly ownership: readonly Ownership[];
  /**
   * The normalised request (normaliseTarget). For CONNECT: method 'CONNECT', path [], scheme 'https'
   * (or 'http', asked again by evaluate.ts when no https rule names the origin).
   */
  readonly target: Target;
  readonly connect: boolean;
  /** DNS answers for a name target, once resolved (address strings); undefined = not resolved yet. Ignored for IP-literal targets. */
  readonly addresses?: readonly string[];
  /** Operator openings (REINS_GATEWAY_ALLOW_PRIVATE). */
  readonly openings: readonly Opening[];
  /**
   * The agent's budget, when it stops this request: spent for the current window, or not
   * accountable (budget.ts); null or absent when the agent may go on.
   */
  readonly budget?: BudgetStop | null;
}

/** Why an agent's budget stops its requests now, in words for the detail. */
export interface BudgetStop {
  readonly reason: 'budget_exceeded' | 'budget_unaccounted';
  readonly detail: string;
}

export type Decision =
  | {
      readonly verdict: 'allow';
      /** The matched rule of the token's grant, canonical text (formatRule). */
      readonly rule: string;
      /** The checked address to dial (canonical text, IPv6 without brackets). */
      readonly address: string;
      /** True for a CONNECT granted whole: a plain, uninspected tunnel. */
      readonly tunnel: boolean;
    }
  | { readonly verdict: 'resolve'; readonly name: string }
  | { readonly verdict: 'deny'; readonly reason: DenyReason; readonly detail: string };

type Denial = Extract<Decision, { verdict: 'deny' }>;
type Bytes = readonly number[];

/** What the grant step hands on: the token rule that grants the request, and whether it is a tunnel. */
interface Grant {
  readonly rule: Rule;
  readonly tunnel: boolean;
}

/** One set of the effective grant, named for the audit detail. */
interface GrantSet {
  readonly label: string;
  readonly set: RuleSet;
}

export function decide(input: DecisionInput): Decision {
  try {
    return decideWellFormed(input);
  } catch {
    // Not reachable with a well-formed input; a denial is the only safe answer to a malfunction.
    return deny('decision_failed', 'the decision failed on its input; the request was refused');
  }
}

function decideWellFormed(input: DecisionInput): Decision {
  const problem = malformed(input);
  if (problem !== null) return deny('decision_failed', problem);

  const refused = checkQuarantine(input) ?? checkRegistration(input) ?? checkOwnership(input);
  if (refused !== null) return refused;

  const grant = input.connect ? grantTunnel(input) : grantRequest(input);
  if ('verdict' in grant) return grant;

  // A request the grant refuses keeps its own reason; only one that would go out is stopped by
  // the budget, and before its name is resolved (a lookup is a request out too).
  const spent = checkBudget(input);
  if (spent !== null) return spent;

  // Threat: a lookup is itself a channel out (an agent can leak data in the name it asks for, to
  // whoever serves that zone). So a name is resolved only once the grant allows it, and the
  // proxy resolves it itself, once, and hands the answers back here.
  const host = input.target.host;
  if (host.kind === 'name' && input.addresses === undefined) return { verdict: 'resolve', name: host.name };

  const answers = host.kind === 'ip' ? [host.bytes] : parseAnswers(input.addresses ?? []);
  if (answers.length === 0) return deny('unresolvable', `${describeHost(input.target)} did not resolve`);

  const blocked = checkAddresses(input, answers) ?? checkOwnedAddresses(input, answers);
  if (blocked !== null) return blocked;

  // Pin: the proxy dials exactly this address, never the name again (a second lookup would let
  // DNS rebinding swap in an answer that was never checked).
  // An IPv4-mapped answer is pinned as its IPv4: it is that host (the checks above judged it so),
  // and a gateway without IPv6 sockets could not dial the mapped form.
  const pinned = answers[0] as Bytes;
  const dial = isMapped(pinned) ? pinned.slice(12) : pinned;
  return {
    verdict: 'allow',
    rule: formatRule(grant.rule),
    address: formatAddress(dial),
    tunnel: grant.tunnel,
  };
}

// ---- 1. the agent ------------------------------------------------------------------------------

/** Threat: a compromised agent keeps its unexpired tokens; quarantine must stop them at once. */
function checkQuarantine(input: DecisionInput): Denial | null {
  return input.quarantined ? deny('agent_quarantined', `agent ${input.token.agent} is quarantined`) : null;
}

/** Threat: an agent removed from policy keeps its unexpired tokens; removal must stop them at once. */
function checkRegistration(input: DecisionInput): Denial | null {
  return input.registration === null
    ? deny('agent_not_registered', `agent ${input.token.agent} is not in the applied policy`)
    : null;
}

/** Threat: a manipulated agent exfiltrating at volume through destinations it may reach. */
function checkBudget(input: DecisionInput): Denial | null {
  return input.budget ? deny(input.budget.reason, input.budget.detail) : null;
}

// ---- 2. ownership ------------------------------------------------------------------------------

/**
 * Threat: one tenant's agents reaching another tenant's services. A destination another tenant
 * owns is refused unless that tenant federates it to the caller's tenant, whatever the caller's
 * own grant says (a tenant's operator could otherwise grant itself anything). The owner is not
 * named in the detail: the caller's tenant reads its own audit rows.
 */
function checkOwnership(input: DecisionInput): Denial | null {
  const target = input.target;
  for (const owner of otherOwners(input)) {
    if (ownershipOf(owner, target, target, input.connect) === 'owned') {
      return deny(
        'cross_tenant',
        `another tenant owns ${describeDestination(input)} and does not federate it to tenant ${input.token.tenant}`,
      );
    }
  }
  return null;
}

/**
 * How an owner's rules bear on the caller at `owned` (the target, or the target at one of its
 * resolved addresses); federation is looked up at both `owned` and `asked` (the target as the
 * caller named it), so an owner may federate a service by name although it owns its addresses.
 * - `owned`: the owner owns it and does not federate it: refused.
 * - `shared`: CONNECT only: the owner owns or federates only part of the origin, so a plain
 *   tunnel would carry requests to parts the caller may not reach.
 * - `clear`: the owner has no claim here, or federates all of it.
 */
function ownershipOf(
  owner: Ownership,
  owned: Target,
  asked: Target,
  connect: boolean,
): 'owned' | 'shared' | 'clear' {
  const federated = owner.federatedToCaller;
  if (!connect) {
    if (findMatch(owner.owns, owned) === null) return 'clear';
    const isFederated =
      federated !== null && (findMatch(federated, owned) !== null || findMatch(federated, asked) !== null);
    return isFederated ? 'clear' : 'owned';
  }
  // A tunnel carries any protocol: an owner's claim on host and port holds whatever scheme its
  // rule names (threat: CONNECT as `http` to an owner's `https` service on the same port).
  const ownedHere = tunnelRules(owner.owns, owned);
  if (ownedHere.length === 0) return 'clear';
  const federatedHere =
    federated === null ? [] : [...tunnelRules(federated, owned), ...tunnelRules(federated, asked)];
  if (federatedHere.some(isWhole)) return 'clear';
  return ownedHere.some(isWhole) && federatedHere.length === 0 ? 'owned' : 'shared';
}

function otherOwners(input: DecisionInput): readonly Ownership[] {
  // A tenant never bars its own agents; the input should not list it, but if it does, skip it.
  return input.ownership.filter((owner) => owner.tenant !== input.token.tenant);
}

// ---- 3. the grant ------------------------------------------------------------------------------

/**
 * The effective grant is token ∩ current registration ∩ ceiling (SPEC.md, "The gateway"). It is
 * evaluated by matching each set, not by intersecting them: intersection is exact, so a request
 * matches the intersection exactly when it matches every set, and matching is a few map probes.
 * The registration is the current one, so a policy apply that narrows it takes effect on tokens
 * already issued.
 */
function grantSets(input: DecisionInput): GrantSet[] {
  const sets: GrantSet[] = [
    { label: 'the token', set: input.token.egress },
    { label: 'the agent’s current registration', set: input.registration ?? EMPTY },
  ];
  if (input.ceiling !== null) sets.push({ label: 'the tenant’s ceiling', set: input.ceiling });
  return sets;
}

/** A request (absolute-form, or inside an inspected tunnel): every set must match it. */
function grantRequest(input: DecisionInput): Grant | Denial {
  const target = input.target;
  const sets = grantSets(input);
  const missing = sets.find(({ set }) => findMatch(set, target) === null);
  const tokenRule = findMatch(input.token.egress, target);
  if (missing === undefined && tokenRule !== null) return { rule: tokenRule, tunnel: false };
  return explainMiss(input, sets, missing?.label ?? 'the token');
}

/**
 * The most precise reason a request is outside the grant, judged on the effective grant at the
 * request's origin (not on any one set: a token naming GET /v1 and a registration naming /v2
 * leave nothing at that origin, which is no_matching_rule, not path_not_allowed).
 */
function explainMiss(input: DecisionInput, sets: readonly GrantSet[], missing: string): Denial {
  const target = input.target;
  const here = effectiveAtOrigin(sets, target);
  const destination = describeDestination(input);
  if (here.some((rule) => pathMatches(rule.path, target.path))) {
    return deny('method_not_allowed', `${target.method} is not granted for ${destination}`);
  }
  if (here.length > 0) {
    return deny('path_not_allowed', `the path of ${destination} is not granted at ${describeOrigin(target)}`);
  }
  return deny('no_matching_rule', `no rule of the effective grant names ${destination}; ${missing} does not`);
}

/**
 * CONNECT: a plain tunnel hides every request inside it, so it is allowed only when the effective
 * grant holds the whole origin (a rule with any method and path /). An origin granted in part is
 * denied `connect_needs_whole_origin`, which evaluate.ts turns into an inspected tunnel when
 * interception is on (every request inside is then decided on its own). So is an origin that
 * another tenant owns in part: the tunnel would reach its parts too.
 */
function grantTunnel(input: DecisionInput): Grant | Denial {
  const target = input.target;
  const sets = grantSets(input);
  const here = effectiveAtOrigin(sets, target);
  const origin = describeOrigin(target);
  if (here.length === 0) {
    const missing = sets.find(({ set }) => originRules(set, target).length === 0)?.label ?? 'the token';
    return deny('no_matching_rule', `no rule of the effective grant names ${origin}; ${missing} does not`);
  }
  if (!here.some(isWhole)) {
    return deny(
      'connect_needs_whole_origin',
      `${origin} is granted only in part; a plain tunnel would carry more`,
    );
  }
  if (otherOwners(input).some((owner) => ownershipOf(owner, target, target, true) === 'shared')) {
    return deny(
      'connect_needs_whole_origin',
      `another tenant owns part of ${origin}; a plain tunnel would reach it`,
    );
  }
  // The intersection holds a whole rule only when every set does, the token's included.
  const tokenRule = originRules(input.token.egress, target).find(isWhole);
  return tokenRule === undefined
    ? deny('decision_failed', `the grant of ${origin} could not be traced to a token rule`)
    : { rule: tokenRule, tunnel: true };
}

/**
 * The effective grant's rules at the target's origin: each set's rules naming the scheme, host and
 * port, intersected. Hosts that match one name (or one address) always nest, so the result is
 * exactly what the sets have in common there: its methods and paths.
 */
function effectiveAtOrigin(sets: readonly GrantSet[], target: Target): readonly Rule[] {
  let here: readonly Rule[] | null = null;
  for (const { set } of sets) {
    const rules = originRules(set, target);
    here = here === null ? rules : intersectRules(here, rules);
    if (here.length === 0) return here;
  }
  return here ?? [];
}

/** The rules of a set that name the target's origin (scheme, host, port), whatever their methods and path. */
function originRules(set: RuleSet, target: Target): Rule[] {
  return set.rules.filter(
    (rule) =>
      rule.scheme === target.scheme && rule.port === target.port && hostMatches(rule.host, target.host),
  );
}

/** The rules of a set that name the target's host and port, whatever their scheme, methods and path. */
function tunnelRules(set: RuleSet, target: Target): Rule[] {
  return set.rules.filter((rule) => rule.port === target.port && hostMatches(rule.host, target.host));
}

/** Any method, path `/`: the rule grants its origin whole. */
function isWhole(rule: Rule): boolean {
  return rule.methods === null && rule.path.length === 0;
}

// ---- 5. the addresses --------------------------------------------------------------------------

// The cached resolver (resolve.ts) hands every request to a name the same answers array until
// its TTL ends: parsed once per array, and each answer classified once per parsed octets, instead
// of per request. Keyed by identity in WeakMaps, so a new answer (a new array) is parsed and
// classified afresh, and nothing outlives the answers it was made from. Pure still: the same
// input gives the same result; only the work is shared.
const parsedAnswers = new WeakMap<readonly string[], readonly Bytes[]>();
const classified = new WeakMap<Bytes, ReturnType<typeof classifyAddress>>();

/** DNS answers as octets; an answer that is not an address is kept as invalid so it is refused. */
function parseAnswers(addresses: readonly string[]): readonly Bytes[] {
  let parsed = parsedAnswers.get(addresses);
  if (parsed === undefined) {
    parsed = addresses.map((answer) => parseAddress(answer) ?? INVALID);
    parsedAnswers.set(addresses, parsed);
  }
  return parsed;
}

function classifyOnce(bytes: Bytes): ReturnType<typeof classifyAddress> {
  let verdict = classified.get(bytes);
  if (verdict === undefined) {
    verdict = classifyAddress(bytes);
    classified.set(bytes, verdict);
  }
  return verdict;
}

/**
 * Threat: server-side request forgery through the gateway (metadata credentials, the operator's
 * private network, the gateway host itself). Every answer must be public, or opened by the
 * operator for this port; metadata addresses only by an opening naming them exactly (isOpened).
 *
 * Every answer, not just the one dialled: a name whose answers mix public and private addresses
 * is refused outright. Its owner controls what it resolves to, and mixing is how DNS rebinding
 * and "first answer public, second internal" tricks are staged; a retry by any layer below the
 * gateway would land on the unchecked one. Refusing costs honest names nothing (they do not
 * resolve into private space) and leaves nothing to reason about.
 */
function checkAddresses(input: DecisionInput, answers: readonly Bytes[]): Denial | null {
  for (const bytes of answers) {
    if (bytes === INVALID) {
      return deny(
        'forbidden_address',
        `${describeHost(input.target)} resolves to something that is not an address`,
      );
    }
    const verdict = classifyOnce(bytes);
    if (verdict.public || isOpened(input.openings, bytes, input.target.port)) continue;
    const where =
      input.target.host.kind === 'name'
        ? `${input.target.host.name} resolves to ${verdict.address}`
        : verdict.address;
    return deny(
      'forbidden_address',
      `${where} is ${verdict.class}, not public, and not opened for port ${input.target.port}`,
    );
  }
  return null;
}

/**
 * Threat: reaching another tenant's addresses under another spelling. The grant never matches a
 * name by IP rules (nor an IPv4 rule the IPv4-mapped literal), but ownership is about the host
 * reached: an owner's IP rules own every name that resolves into them, and an IPv4-mapped literal
 * is its IPv4. Checked only for addresses that passed the address check, as only those could be
 * dialled, so an owner's unopened private ranges are not revealed.
 */
function checkOwnedAddresses(input: DecisionInput, answers: readonly Bytes[]): Denial | null {
  const target = input.target;
  for (const bytes of answers) {
    const atAddress = targetAt(target, bytes);
    const where =
      target.host.kind === 'name'
        ? `${target.host.name} resolves to ${describeHost(atAddress)}`
        : `${describeHost(target)} is ${describeHost(atAddress)}`;
    for (const owner of otherOwners(input)) {
      const claim = ownershipOf(owner, atAddress, target, input.connect);
      if (claim === 'owned') {
        return deny(
          'cross_tenant',
          `${where}, which another tenant owns and does not federate to tenant ${input.token.tenant}`,
        );
      }
      if (claim === 'shared') {
        return deny(
          'connect_needs_whole_origin',
          `${where}, part of which another tenant owns; a plain tunnel would reach it`,
        );
      }
    }
  }
  return null;
}

/** The target as if it had named the address (an IPv4-mapped address is its IPv4: it is that host). */
function targetAt(target: Target, bytes: Bytes): Target {
  const address = isMapped(bytes) ? bytes.slice(12) : bytes;
  return { ...target, host: { kind: 'ip', family: address.length === 4 ? 4 : 6, bytes: address } };
}

// ---- input and text ----------------------------------------------------------------------------

const EMPTY: RuleSet = {
  rules: [],
  byName: new Map(),
  oneLabel: new Map(),
  anyDepth: new Map(),
  ip: [],
};

/** Stands for a DNS answer that is not an address (compared by identity). */
const INVALID: Bytes = Object.freeze([]);

function deny(reason: DenyReason, detail: string): Denial {
  return { verdict: 'deny', reason, detail };
}

/**
 * Why the input cannot be decided, or null. The proxy builds the input from verified values, so
 * this is a guard against its bugs, not against agents: whatever is off is refused, not guessed.
 */
function malformed(input: DecisionInput): string | null {
  if (typeof input !== 'object' || input === null) return 'the decision input is not an object';
  const { token } = input;
  if (typeof token !== 'object' || token === null) return 'the token facts are missing';
  if (typeof token.tenant !== 'string' || typeof token.agent !== 'string' || !isRuleSet(token.egress)) {
    return 'the token facts are incomplete';
  }
  if (typeof input.quarantined !== 'boolean') return 'the quarantine flag is not a boolean';
  if (input.registration !== null && !isRuleSet(input.registration))
    return 'the registration is not a rule set';
  if (input.ceiling !== null && !isRuleSet(input.ceiling)) return 'the ceiling is not a rule set';
  if (!Array.isArray(input.ownership) || !input.ownership.every(isOwnership))
    return 'the ownership list is malformed';
  if (!isTarget(input.target)) return 'the target is not a normalised target';
  if (typeof input.connect !== 'boolean') return 'the CONNECT flag is not a boolean';
  const { addresses } = input;
  if (
    addresses !== undefined &&
    !(Array.isArray(addresses) && addresses.every((a) => typeof a === 'string'))
  ) {
    return 'the DNS answers are not a list of strings';
  }
  if (!Array.isArray(input.openings)) return 'the openings are not a list';
  const { budget } = input;
  if (
    budget !== undefined &&
    budget !== null &&
    !(
      (budget.reason === 'budget_exceeded' || budget.reason === 'budget_unaccounted') &&
      typeof budget.detail === 'string'
    )
  ) {
    return 'the budget stop is malformed';
  }
  return null;
}

function isRuleSet(value: unknown): value is RuleSet {
  if (typeof value !== 'object' || value === null) return false;
  const set = value as Partial<RuleSet>;
  return (
    Array.isArray(set.rules) &&
    set.byName instanceof Map &&
    set.oneLabel instanceof Map &&
    set.anyDepth instanceof Map &&
    Array.isArray(set.ip)
  );
}

function isOwnership(value: unknown): value is Ownership {
  if (typeof value !== 'object' || value === null) return false;
  const owner = value as Partial<Ownership>;
  return (
    typeof owner.tenant === 'string' &&
    isRuleSet(owner.owns) &&
    (owner.federatedToCaller === null || isRuleSet(owner.federatedToCaller))
  );
}

function isTarget(value: unknown): value is Target {
  if (typeof value !== 'object' || value === null) return false;
  const target = value as Partial<Target>;
  const host = target.host as Partial<Target['host']> | undefined;
  if (typeof host !== 'object' || host === null) return false;
  const hostOk =
    host.kind === 'name'
      ? typeof host.name === 'string' && host.name !== ''
      : host.kind === 'ip' &&
        Array.isArray(host.bytes) &&
        host.bytes.length === (host.family === 4 ? 4 : host.family === 6 ? 16 : -1) &&
        parseAddress(host.bytes) !== null;
  return (
    hostOk &&
    typeof target.method === 'string' &&
    (target.scheme === 'http' || target.scheme === 'https') &&
    Number.isInteger(target.port) &&
    (target.port as number) >= 1 &&
    (target.port as number) <= 65535 &&
    Array.isArray(target.path) &&
    target.path.every((segment) => typeof segment === 'string')
  );
}

function describeHost(target: Target): string {
  const host = target.host;
  if (host.kind === 'name') return host.name;
  return host.family === 4 ? formatAddress(host.bytes) : `[${formatAddress(host.bytes)}]`;
}

function describeOrigin(target: Target): string {
  return `${target.scheme}://${describeHost(target)}:${target.port}`;
}

function describeDestination(input: DecisionInput): string {
  const target = input.target;
  if (input.connect) return `CONNECT ${describeOrigin(target)}`;
  return `${target.method} ${describeOrigin(target)}/${target.path.join('/')}`;
}
