// Every setting of `reins serve`: its environment variable (names fixed by SPEC.md), its flag,
// its default and what it means. docs/configuration.md is checked against this table by
// test/config/settings.test.ts, so the two cannot drift apart.

export interface Setting {
  readonly key: keyof Config;
  readonly env: string;
  readonly flag: string;
  readonly placeholder: string;
  readonly default: string | undefined;
  readonly description: string;
}

export interface Config {
  readonly policies: string;
  readonly dataDir: string;
  readonly databaseUrl: string | undefined;
  readonly issuer: string;
  readonly host: string;
  readonly port: number;
  readonly gatewayPort: number;
  readonly gatewayResource: string;
  readonly adminPort: number;
  readonly adminToken: string | undefined;
  readonly gatewayAllowPrivate: readonly string[];
  readonly gatewayIntercept: 'auto' | 'always' | 'never';
  readonly gatewayUpstreamCa: string | undefined;
  readonly gatewayShutdownGraceMs: number;
  /** Threads serving the gateway port. */
  readonly gatewayWorkers: number;
  readonly secretKey: string | undefined;
  readonly logLevel: 'trace' | 'debug' | 'info' | 'warn' | 'error' | 'fatal' | 'silent';
}

export const SETTINGS: readonly Setting[] = [
  {
    key: 'policies',
    env: 'REINS_POLICIES',
    flag: '--policies',
    placeholder: 'dir',
    default: './policies',
    description: 'Policy directory, validated and applied at start.',
  },
  {
    key: 'dataDir',
    env: 'REINS_DATA_DIR',
    flag: '--data-dir',
    placeholder: 'dir',
    default: './.reins',
    description:
      "Embedded database (PGlite) directory; 'memory' keeps it in memory. With DATABASE_URL, where audit rows wait while PostgreSQL is unreachable.",
  },
  {
    key: 'databaseUrl',
    env: 'DATABASE_URL',
    flag: '--database-url',
    placeholder: 'url',
    default: undefined,
    description: 'PostgreSQL connection URL; when set, used instead of the embedded database.',
  },
  {
    key: 'issuer',
    env: 'REINS_ISSUER',
    flag: '--issuer',
    placeholder: 'url',
    default: 'http://127.0.0.1:3000',
    description: 'The authorization server issuer identifier (the `iss` of every token).',
  },
  {
    key: 'host',
    env: 'REINS_HOST',
    flag: '--host',
    placeholder: 'address',
    default: '127.0.0.1',
    description: 'Address every listener binds to. Loopback by default; set 0.0.0.0 to serve other machines.',
  },
  {
    key: 'port',
    env: 'REINS_PORT',
    flag: '--port',
    placeholder: 'port',
    default: '3000',
    description: 'Authorization server port.',
  },
  {
    key: 'gatewayPort',
    env: 'REINS_GATEWAY_PORT',
    flag: '--gateway-port',
    placeholder: 'port',
    default: '3128',
    description: 'Gateway (forward proxy) port.',
  },
  {
    key: 'gatewayResource',
    env: 'REINS_GATEWAY_RESOURCE',
    flag: '--gateway-resource',
    placeholder: 'uri',
    default: 'urn:reins:gateway',
    description: "The gateway's resource identifier: the `aud` of egress tokens and the default `resource`.",
  },
  {
    key: 'adminPort',
    env: 'REINS_ADMIN_PORT',
    flag: '--admin-port',
    placeholder: 'port',
    default: '9464',
    description:
      'Admin port: /metrics, /livez, /readyz, /healthz, and the admin API (/admin/v1/, `reins serve` only).',
  },
  {
    key: 'adminToken',
    env: 'REINS_ADMIN_TOKEN',
    flag: '--admin-token',
    placeholder: 'token',
    default: undefined,
    description:
      'Bearer credential of the admin API (at least 32 characters). Unset: `reins serve` makes a random one and leaves it for local CLI commands in the data directory (mode 0600). Prefer the environment variable to the flag.',
  },
  {
    key: 'gatewayAllowPrivate',
    env: 'REINS_GATEWAY_ALLOW_PRIVATE',
    flag: '--gateway-allow-private',
    placeholder: 'cidrs',
    default: '',
    description:
      'Comma-separated CIDRs, each optionally with :port, that the gateway may reach although they are not public. Tokens must still grant them.',
  },
  {
    key: 'gatewayIntercept',
    env: 'REINS_GATEWAY_INTERCEPT',
    flag: '--gateway-intercept',
    placeholder: 'mode',
    default: 'auto',
    description:
      "'auto' inspects tunnels to partly granted origins, 'always' inspects every tunnel, 'never' refuses partly granted origins.",
  },
  {
    key: 'gatewayUpstreamCa',
    env: 'REINS_GATEWAY_UPSTREAM_CA',
    flag: '--gateway-upstream-ca',
    placeholder: 'file',
    default: undefined,
    description: 'Extra PEM bundle the gateway trusts for upstream TLS (internal services, tests).',
  },
  {
    key: 'gatewayShutdownGraceMs',
    env: 'REINS_GATEWAY_SHUTDOWN_GRACE_MS',
    flag: '--gateway-shutdown-grace-ms',
    placeholder: 'ms',
    default: '10000',
    description:
      'On SIGTERM, how long requests and tunnels in flight may take to finish before the gateway cuts them (each audited as `shutdown`).',
  },
  {
    key: 'gatewayWorkers',
    env: 'REINS_GATEWAY_WORKERS',
    flag: '--gateway-workers',
    placeholder: 'n',
    default: undefined,
    description:
      'How many threads serve the gateway port (1 to 256); unset: one per CPU. Each decides on its own from the same live state.',
  },
  {
    key: 'secretKey',
    env: 'REINS_SECRET_KEY',
    flag: '--secret-key',
    placeholder: 'key',
    default: undefined,
    description:
      'Encrypts private keys (signing keys, interception CA) at rest. Prefer the environment variable to the flag.',
  },
  {
    key: 'logLevel',
    env: 'REINS_LOG_LEVEL',
    flag: '--log-level',
    placeholder: 'level',
    default: 'info',
    description: 'trace, debug, info, warn, error, fatal or silent.',
  },
];
