// Builders for decide()'s input: rule sets from rule text, targets from a request line, and one
// baseline input that each test changes in one place. Fakes built from the real parsers, no mocks.
import {
  compileRuleSet,
  normaliseTarget,
  type Opening,
  parseOpening,
  parseRule,
  type RuleSet,
  type Target,
} from '../../src/egress/index.ts';
import type { DecisionInput, Ownership } from '../../src/gateway/decide.ts';

/** A compiled rule set from rule texts; throws on a typo so a test cannot pass by accident. */
export function rules(...texts: string[]): RuleSet {
  return compileRuleSet(
    texts.map((text) => {
      const parsed = parseRule(text);
      if (!parsed.ok) throw new Error(`bad rule in test '${text}': ${parsed.error.message}`);
      return parsed.rule;
    }),
  );
}

export function openings(...texts: string[]): Opening[] {
  return texts.map((text) => {
    const parsed = parseOpening(text);
    if (!parsed.ok) throw new Error(`bad opening in test '${text}': ${parsed.error.message}`);
    return parsed.opening;
  });
}

const URL_PARTS = /^(https?):\/\/(\[[^\]]+\]|[^/:]+)(?::([0-9]+))?(\/.*)?$/;

/** `request('POST https://api.example.com/v1/charges')`, normalised as the proxy would. */
export function request(line: string): Target {
  const [method = '', url = ''] = line.split(' ');
  const parts = URL_PARTS.exec(url);
  if (parts === null) throw new Error(`bad request in test '${line}'`);
  const [, scheme = '', host = '', port, path] = parts;
  const result = normaliseTarget({ method, scheme, host, port: port ?? null, path: path ?? '/' });
  if (!result.ok) throw new Error(`bad request in test '${line}': ${result.message}`);
  return result.target;
}

/** `connect('api.example.com:443')`: the CONNECT target (https, or http on port 80; path /). */
export function connect(authority: string): Target {
  const colon = authority.lastIndexOf(':');
  const host = authority.slice(0, colon);
  const port = Number(authority.slice(colon + 1));
  const result = normaliseTarget({
    method: 'CONNECT',
    scheme: port === 80 ? 'http' : 'https',
    host,
    port,
    path: '/',
  });
  if (!result.ok) throw new Error(`bad CONNECT in test '${authority}': ${result.message}`);
  return result.target;
}

export function owner(tenant: string, owns: RuleSet, federatedToCaller: RuleSet | null = null): Ownership {
  return { tenant, owns, federatedToCaller };
}

/**
 * Agent `scraper` of tenant `acme`, whose token and registration both grant GET and POST on
 * api.example.com/v1 and all of files.example.com; no ceiling, no other tenants, no openings.
 */
export function input(changes: Partial<DecisionInput> = {}): DecisionInput {
  const grant = rules('GET,POST https://api.example.com/v1', 'https://files.example.com');
  return {
    token: { tenant: 'acme', agent: 'scraper', egress: grant },
    registration: grant,
    quarantined: false,
    ceiling: null,
    ownership: [],
    target: request('GET https://api.example.com/v1/items'),
    connect: false,
    openings: [],
    ...changes,
  };
}

/** The same, with the token's egress replaced (the registration too, unless given). */
export function granting(texts: string[], changes: Partial<DecisionInput> = {}): DecisionInput {
  const grant = rules(...texts);
  return input({
    token: { tenant: 'acme', agent: 'scraper', egress: grant },
    registration: grant,
    ...changes,
  });
}
