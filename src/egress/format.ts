// formatRule: the canonical text of a rule. parseRule(formatRule(r)) gives back r.
import { formatHostPattern } from './host.ts';
import { formatPath } from './path.ts';
import { DEFAULT_PORTS, type Rule } from './rule.ts';

export function formatRule(rule: Rule): string {
  const methods = rule.methods === null ? '' : `${rule.methods.join(',')} `;
  const port = rule.port === DEFAULT_PORTS[rule.scheme] ? '' : `:${rule.port}`;
  let host = formatHostPattern(rule.host);
  // `https://10.1.2.3/2024` would read back as the range 10.1.2.3/2024 (invalid) or, for small
  // numbers, as a CIDR: spell the /32 out when the path's first segment is a number and no port
  // separates them.
  if (rule.host.kind === 'ip' && rule.host.family === 4 && rule.host.prefix === 32 && port === '') {
    if (/^[0-9]+$/.test(rule.path[0] ?? '')) host += '/32';
  }
  return `${methods}${rule.scheme}://${host}${port}${formatPath(rule.path)}`;
}
