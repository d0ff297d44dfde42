// fast-check generators for rules and requests over deliberately small alphabets, so that
// generated hosts, ports, paths and methods collide often and both outcomes of every match
// are exercised (test/egress/properties.test.ts checks that they are).
import fc from 'fast-check';
import { normaliseTarget, parseRule, type Rule, type Target } from '../../src/egress/index.ts';

const label = fc.constantFrom('a', 'b', 'c', 'xn--bcher-kva');
const dnsName = (min: number, max: number) =>
  fc.array(label, { minLength: min, maxLength: max }).map((labels) => labels.join('.'));
const methodsList = ['GET', 'POST', 'PUT'] as const;
const segment = fc.constantFrom('v1', 'v2', 'x', '~u');

const ipv4 = fc.integer({ min: 0, max: 255 }).map((last) => `10.0.0.${last}`);
const ipv6 = fc.integer({ min: 0, max: 255 }).map((last) => `fd00::${last.toString(16)}`);

function cidr4(address: string, prefix: number): string {
  const last = Number(address.split('.')[3]);
  const keep = prefix - 24;
  const masked = last & ((0xff << (8 - keep)) & 0xff);
  return prefix === 32 ? address : `10.0.0.${masked}/${prefix}`;
}

function cidr6(last: number, prefix: number): string {
  const keep = prefix - 120;
  const masked = last & ((0xff << (8 - keep)) & 0xff);
  return prefix === 128 ? `[fd00::${last.toString(16)}]` : `[fd00::${masked.toString(16)}/${prefix}]`;
}

const hostText = fc.oneof(
  { weight: 3, arbitrary: dnsName(1, 3) },
  { weight: 2, arbitrary: dnsName(1, 2).map((base) => `*.${base}`) },
  { weight: 2, arbitrary: dnsName(1, 2).map((base) => `**.${base}`) },
  { weight: 1, arbitrary: fc.tuple(ipv4, fc.integer({ min: 24, max: 32 })).map(([a, p]) => cidr4(a, p)) },
  {
    weight: 1,
    arbitrary: fc
      .tuple(fc.integer({ min: 0, max: 255 }), fc.integer({ min: 120, max: 128 }))
      .map(([a, p]) => cidr6(a, p)),
  },
);

/** Rule text, as an operator would write it. */
export const ruleText = fc
  .record({
    methods: fc.option(fc.subarray([...methodsList], { minLength: 1 }), { nil: null }),
    scheme: fc.constantFrom('http', 'https'),
    host: hostText,
    port: fc.constantFrom(null, 80, 443, 8443),
    path: fc.array(segment, { maxLength: 3 }),
    trailingSlash: fc.boolean(),
  })
  .map(({ methods, scheme, host, port, path, trailingSlash }) => {
    const m = methods === null ? '' : `${methods.join(',')} `;
    const p = port === null ? '' : `:${port}`;
    const tail =
      path.length === 0 ? (trailingSlash ? '/' : '') : `/${path.join('/')}${trailingSlash ? '/' : ''}`;
    return `${m}${scheme}://${host}${p}${tail}`;
  });

function parsed(text: string): Rule {
  const result = parseRule(text);
  if (!result.ok) throw new Error(`generator wrote an invalid rule '${text}': ${result.error.message}`);
  return result.rule;
}

export const rule = ruleText.map(parsed);
export const ruleSet = fc.array(rule, { maxLength: 6 });

/** A request, normalised as the gateway would. */
export const target: fc.Arbitrary<Target> = fc
  .record({
    method: fc.constantFrom('GET', 'POST', 'PUT', 'DELETE'),
    scheme: fc.constantFrom('http', 'https'),
    host: fc.oneof(
      { weight: 4, arbitrary: dnsName(1, 5) },
      ipv4,
      ipv6.map((a) => `[${a}]`),
    ),
    port: fc.constantFrom(null, 80, 443, 8443),
    path: fc.array(fc.constantFrom('v1', 'v2', 'x', '~u', '%7Eu', ''), { maxLength: 4 }),
  })
  .map(({ method, scheme, host, port, path }) => {
    const result = normaliseTarget({ method, scheme, host, port, path: `/${path.join('/')}` });
    if (!result.ok) throw new Error(`generator wrote an invalid request: ${result.message}`);
    return result.target;
  });

/**
 * A request built from a rule (so it matches it), then with one component perturbed half of the
 * time (so it lands just inside or just outside other rules): random requests alone almost
 * never hit a generated rule, and a property over requests that never match proves nothing.
 */
function instanceOf(r: Rule): fc.Arbitrary<Target> {
  const host = (() => {
    switch (r.host.kind) {
      case 'name':
        return fc.constant(r.host.name);
      case 'wildcard': {
        const base = r.host.base;
        return r.host.depth === 'one'
          ? label.map((l) => `${l}.${base}`)
          : dnsName(1, 2).map((p) => `${p}.${base}`);
      }
      case 'ip': {
        const { family, bytes, prefix } = r.host;
        const width = family === 4 ? 32 : 128;
        return fc.integer({ min: 0, max: 255 }).map((n) => {
          const hostBits = Math.min(8, width - prefix);
          const last = ((bytes.at(-1) ?? 0) & ((0xff << hostBits) & 0xff)) | (n & ((1 << hostBits) - 1));
          const out = [...bytes.slice(0, -1), last];
          return family === 4 ? out.join('.') : `[fd00::${last.toString(16)}]`;
        });
      }
    }
  })();
  return fc
    .record({
      method: r.methods === null ? fc.constantFrom('GET', 'POST', 'DELETE') : fc.constantFrom(...r.methods),
      host,
      extra: fc.array(fc.constantFrom('v1', 'x', ''), { maxLength: 2 }),
      perturb: fc.constantFrom('none', 'none', 'none', 'method', 'scheme', 'port', 'host', 'path'),
      other: target,
    })
    .map(({ method, host, extra, perturb, other }) => {
      const result = normaliseTarget({
        method: perturb === 'method' ? other.method : method,
        scheme: perturb === 'scheme' ? other.scheme : r.scheme,
        host: perturb === 'host' ? targetHostText(other) : host,
        port: perturb === 'port' ? other.port : r.port,
        path: perturb === 'path' ? `/${other.path.join('/')}` : `/${[...r.path, ...extra].join('/')}`,
      });
      if (!result.ok) throw new Error(`generator wrote an invalid request: ${result.message}`);
      return result.target;
    });
}

function targetHostText(t: Target): string {
  if (t.host.kind === 'name') return t.host.name;
  return t.host.family === 4 ? t.host.bytes.join('.') : `[fd00::${(t.host.bytes.at(-1) ?? 0).toString(16)}]`;
}

/** A request near the given rule sets: an instance of one of their rules, or a random one. */
export function targetNear(...sets: ReadonlyArray<readonly Rule[]>): fc.Arbitrary<Target> {
  const rules = sets.flat();
  if (rules.length === 0) return target;
  return fc.oneof(target, fc.constantFrom(...rules).chain(instanceOf));
}

/**
 * A rule that matches `x`, generalised at random (wider host pattern, shorter path, any method,
 * or a CIDR around an address), and perturbed now and then so it misses `x` narrowly.
 */
function ruleAround(x: Target): fc.Arbitrary<Rule> {
  let host: fc.Arbitrary<string>;
  if (x.host.kind === 'name') {
    const name = x.host.name;
    const labels = name.split('.');
    const parent = labels.slice(1).join('.');
    const ancestors = labels.slice(1).map((_, i) => labels.slice(i + 1).join('.'));
    host = fc.constantFrom(
      name,
      ...(parent === '' ? [] : [`*.${parent}`]),
      ...ancestors.map((a) => `**.${a}`),
      ...(labels.length > 1 ? [`*.${name}`, `**.${name}`] : []),
    );
  } else if (x.host.family === 4) {
    const last = x.host.bytes[3] ?? 0;
    host = fc.integer({ min: 24, max: 32 }).map((p) => cidr4(`10.0.0.${last}`, p));
  } else {
    const last = x.host.bytes[15] ?? 0;
    host = fc.integer({ min: 120, max: 128 }).map((p) => cidr6(last, p));
  }
  return fc
    .record({
      host,
      keep: fc.integer({ min: 0, max: x.path.length }),
      methods: fc.constantFrom('any', 'exact', 'more', 'other'),
      port: fc.constantFrom('same', 'same', 'same', 'other'),
    })
    .map(({ host, keep, methods, port }) => {
      const m = {
        any: '',
        exact: `${x.method} `,
        more: `${[...new Set([x.method, 'PUT'])].sort().join(',')} `,
        other: 'PUT ',
      }[methods];
      const path = x.path.slice(0, keep).filter((segment) => segment !== '');
      const p = port === 'same' ? x.port : x.port === 8443 ? 443 : 8443;
      return parsed(`${m}${x.scheme}://${host}:${p}/${path.join('/')}`);
    });
}

/**
 * n rule sets and a request: the sets mix random rules with rules around one seed request, so
 * they overlap often, and the request is the seed or one near the sets' rules.
 */
export function setsAndTarget(n: number): fc.Arbitrary<[Rule[][], Target]> {
  return target.chain((seed) => {
    const member = fc.oneof(rule, ruleAround(seed));
    return fc
      .array(fc.array(member, { maxLength: 5 }), { minLength: n, maxLength: n })
      .chain((sets) =>
        fc.oneof(fc.constant(seed), targetNear(...sets)).map((x) => [sets, x] as [Rule[][], Target]),
      );
  });
}
