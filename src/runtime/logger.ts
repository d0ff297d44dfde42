// JSON logs (pino) for the running service. Secrets and tokens never reach a log line: the
// paths below are redacted wherever they appear, as a second line of defence behind code that
// does not log them in the first place.
import pino, { type Logger } from 'pino';
import type { Config } from '../config/settings.ts';

export type { Logger };

const REDACT = [
  'secretKey',
  'databaseUrl',
  'adminToken',
  'example_secret',
  'password',
  'secret',
  'token',
  'access_token',
  'client_secret',
  'authorization',
  'req.headers.authorization',
  'req.headers["proxy-authorization"]',
  '*.secretKey',
  '*.adminToken',
  '*.token',
  '*.example_secret',
  '*.databaseUrl',
  '*.password',
  '*.client_secret',
  '*.access_token',
];

export function createLogger(level: Config['logLevel'], destination?: pino.DestinationStream): Logger {
  return pino(
    { level, base: { service: 'reins' }, redact: { paths: REDACT, censor: '[redacted]' } },
    destination ?? pino.destination({ sync: false }),
  );
}

/**
 * The logger of the gateway's ECS audit lines: `log` without the redaction. Redaction walks every
 * line for the paths above, which cost some 16 µs a line here (three quarters of writing it), on
 * every request the gateway serves; and an audit line cannot hold what it looks for: ecsFields
 * (src/gateway/audit-format.ts) builds it from an exchange event, whose fields are facts the
 * gateway established (ids, names, the path without its query), never a header value, a token or
 * a configuration value (test/gateway/audit.test.ts checks the line for the token and the query).
 */
export function auditLineLogger(log: Logger): Logger {
  return log.child({}, { redact: { paths: [], censor: '[redacted]' } });
}
