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
