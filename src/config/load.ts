// Configuration from flags and the environment (flags win), validated in one place so that a
// wrong value stops the start with a message naming the variable, not a crash later.
import { availableParallelism } from 'node:os';
import { type Config, SETTINGS, type Setting } from './settings.ts';

export class ConfigError extends Error {
  readonly code = 'invalid_config';
  constructor(message: string) {
    super(message);
    this.name = 'ConfigError';
  }
}

const LOG_LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'] as const;
const INTERCEPT = ['auto', 'always', 'never'] as const;

/**
 * `flags` are commander's parsed options (camelCase keys as in Config); `env` is the process
 * environment. Pure: the caller passes both in.
 */
export function loadConfig(
  flags: Readonly<Record<string, unknown>>,
  env: Readonly<Record<string, string | undefined>>,
): Config {
  const raw = (setting: Setting): string | undefined => {
    const flag = flags[setting.key];
    if (typeof flag === 'string') return flag;
    const value = env[setting.env];
    return value === undefined || value === '' ? setting.default : value;
  };
  const get = (key: keyof Config): { setting: Setting; value: string | undefined } => {
    const setting = SETTINGS.find((s) => s.key === key);
    if (!setting) throw new Error(`no setting ${key}`);
    return { setting, value: raw(setting) };
  };
  const text = (key: keyof Config): string => get(key).value ?? '';
  const optional = (key: keyof Config): string | undefined => get(key).value;
  const port = (key: keyof Config): number => {
    const { setting, value } = get(key);
    const n = Number(value);
    if (!/^[0-9]+$/.test(value ?? '') || n > 65535) {
      throw new ConfigError(
        `${setting.env} (${setting.flag}) must be a port number from 0 to 65535, not '${value}'`,
      );
    }
    return n;
  };
  const milliseconds = (key: keyof Config): number => {
    const { setting, value } = get(key);
    const n = Number(value);
    if (!/^[0-9]+$/.test(value ?? '') || n > 3_600_000) {
      throw new ConfigError(
        `${setting.env} (${setting.flag}) must be a number of milliseconds from 0 to 3600000, not '${value}'`,
      );
    }
    return n;
  };
  const oneOf = <T extends string>(key: keyof Config, allowed: readonly T[]): T => {
    const { setting, value } = get(key);
    if (!allowed.includes(value as T)) {
      throw new ConfigError(
        `${setting.env} (${setting.flag}) must be one of ${allowed.join(', ')}, not '${value}'`,
      );
    }
    return value as T;
  };
  const url = (key: keyof Config): string => {
    const { setting, value } = get(key);
    if (!URL.canParse(value ?? ''))
      throw new ConfigError(`${setting.env} (${setting.flag}) must be a URL, not '${value}'`);
    return value as string;
  };

  const databaseUrl = optional('databaseUrl');
  if (databaseUrl !== undefined && !/^postgres(ql)?:\/\//.test(databaseUrl)) {
    throw new ConfigError('DATABASE_URL (--database-url) must be a postgres:// or postgresql:// URL');
  }
  return {
    policies: text('policies'),
    dataDir: text('dataDir'),
    databaseUrl,
    issuer: url('issuer'),
    host: text('host'),
    port: port('port'),
    gatewayPort: port('gatewayPort'),
    gatewayResource: text('gatewayResource'),
    adminPort: port('adminPort'),
    adminToken: adminToken(optional('adminToken')),
    gatewayAllowPrivate: text('gatewayAllowPrivate')
      .split(',')
      .map((entry) => entry.trim())
      .filter((entry) => entry !== ''),
    gatewayIntercept: oneOf('gatewayIntercept', INTERCEPT),
    gatewayUpstreamCa: optional('gatewayUpstreamCa'),
    gatewayShutdownGraceMs: milliseconds('gatewayShutdownGraceMs'),
    gatewayWorkers: workers(optional('gatewayWorkers')),
    secretKey: optional('secretKey'),
    logLevel: oneOf('logLevel', LOG_LEVELS),
  };
}

/** REINS_GATEWAY_WORKERS: a count of threads, by default one per CPU the process may use. */
function workers(value: string | undefined): number {
  if (value === undefined) return availableParallelism();
  const n = Number(value);
  if (!/^[0-9]+$/.test(value) || n < 1 || n > 256) {
    throw new ConfigError(
      `REINS_GATEWAY_WORKERS (--gateway-workers) must be a number of threads from 1 to 256, not '${value}'`,
    );
  }
  return n;
}

/** A guessable admin credential would open the admin API to anyone who can reach the port. */
function adminToken(value: string | undefined): string | undefined {
  if (value !== undefined && value.length < 32) {
    throw new ConfigError(
      'REINS_ADMIN_TOKEN (--admin-token) must be at least 32 characters; make one with `openssl rand -base64 32`',
    );
  }
  return value;
}
