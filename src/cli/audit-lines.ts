// How `reins audit tail|query` print audit rows: one line each, or one JSON object each. Pure: it
// takes AuditRecords, wherever they were read from (a database the CLI opened, or a running
// server's admin API), and returns text.
import type { AuditRecord } from '../gateway/audit-read.ts';

// Threat: the host, path and names come from agents' requests. Printed raw, a control character
// (an ANSI escape, a carriage return) could rewrite the operator's terminal or forge a line.
// biome-ignore lint/suspicious/noControlCharactersInRegex: these are the characters escaped.
const CONTROL = /[\u0000-\u001f\u007f-\u009f\u2028\u2029]/g;

function safe(value: string | number | null): string {
  if (value === null) return '-';
  return String(value).replace(CONTROL, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

function bracketed(host: string): string {
  return host.includes(':') && !host.startsWith('[') ? `[${host}]` : host;
}

/** `scheme://host:port/path`; a CONNECT's `host:port` (it has no scheme or path of its own). */
function destination(record: AuditRecord): string {
  if (record.host === null) return '-';
  const host = bracketed(record.host);
  const port = record.port === null ? '' : `:${record.port}`;
  if (record.method === 'CONNECT') return `${host}${port}`;
  return `${record.scheme ?? '-'}://${host}${port}${record.path ?? ''}`;
}

/** The acting agent, and the user it acts for when the token is delegated (sub ≠ agent). */
function actor(record: AuditRecord): string | null {
  if (record.agent === null) return null;
  if (record.subject === null || record.subject === record.agent) return record.agent;
  return `${record.agent} (for ${record.subject})`;
}

/** The reason; for a 407, with the credential problem (missing, expired, …) when it is known. */
function reason(record: AuditRecord): string | null {
  const detail = record.detail ?? null;
  if (record.status === 407 && record.reason !== null && detail !== null) {
    return `${record.reason} (${detail})`;
  }
  return record.reason;
}

/**
 * One line: time, decision, reason, tenant, agent (and delegated user), method, destination,
 * status. `-` where a value is unknown.
 */
export function formatLine(record: AuditRecord): string {
  return [
    record.time,
    record.decision.padEnd(7),
    reason(record),
    record.tenant,
    actor(record),
    record.method,
    destination(record),
    record.status,
  ]
    .map((value) => safe(value))
    .join('  ');
}

/** Every record on its own line, as text or as JSON with every column; '' for none. */
export function formatRecords(records: readonly AuditRecord[], json: boolean): string {
  if (records.length === 0) return '';
  return `${records.map((record) => (json ? JSON.stringify(record) : formatLine(record))).join('\n')}\n`;
}

export const LINE_HELP =
  '\nEach line: time (UTC), decision, reason, tenant, agent, method, destination, status;\n' +
  '"-" where a value is unknown (a 407 has no tenant). The destination is scheme://host:port/path,\n' +
  'or host:port for a CONNECT. A delegated request shows its user: "agent (for user)"; a 407 its\n' +
  'credential problem: "invalid_token (expired)". Paths never carry the query string: it is never\n' +
  'stored. Control characters are printed escaped (\\u001b).\n';
