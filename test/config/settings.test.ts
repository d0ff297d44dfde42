import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../../src/config/load.ts';
import { SETTINGS } from '../../src/config/settings.ts';

describe('the configuration reference', () => {
  const doc = readFileSync(new URL('../../docs/configuration.md', import.meta.url), 'utf8');

  it.each(SETTINGS.map((s) => [s.env, s]))('documents %s with its flag and default', (_env, setting) => {
    const row = doc.split('\n').find((line) => line.startsWith(`| \`${setting.env}\` `));
    expect(row).toBeDefined();
    expect(row).toContain(`\`${setting.flag} <${setting.placeholder}>\``);
    if (setting.default) expect(row).toContain(`\`${setting.default}\``);
  });

  it('documents no variable that the code does not read', () => {
    const documented = [...doc.matchAll(/^\| `([A-Z_]+)` /gm)].map((m) => m[1]);
    expect(documented.sort()).toEqual(SETTINGS.map((s) => s.env).sort());
  });

  it('covers every variable SPEC.md names', () => {
    const spec = [
      'REINS_POLICIES',
      'REINS_DATA_DIR',
      'DATABASE_URL',
      'REINS_ISSUER',
      'REINS_PORT',
      'REINS_GATEWAY_PORT',
      'REINS_GATEWAY_RESOURCE',
      'REINS_ADMIN_PORT',
      'REINS_GATEWAY_ALLOW_PRIVATE',
      'REINS_GATEWAY_INTERCEPT',
      'REINS_GATEWAY_UPSTREAM_CA',
      'REINS_SECRET_KEY',
      'REINS_LOG_LEVEL',
    ];
    expect(SETTINGS.map((s) => s.env)).toEqual(expect.arrayContaining(spec));
  });
});

describe('loading the configuration', () => {
  it('uses the documented defaults when nothing is set', () => {
    expect(loadConfig({}, {})).toMatchObject({
      policies: './policies',
      dataDir: './.reins',
      databaseUrl: undefined,
      issuer: 'http://127.0.0.1:3000',
      port: 3000,
      gatewayPort: 3128,
      gatewayResource: 'urn:reins:gateway',
      adminPort: 9464,
      gatewayAllowPrivate: [],
      gatewayIntercept: 'auto',
      logLevel: 'info',
    });
  });

  it('prefers a flag to the environment, and the environment to the default', () => {
    expect(loadConfig({ port: '4000' }, { REINS_PORT: '5000' }).port).toBe(4000);
    expect(loadConfig({}, { REINS_PORT: '5000' }).port).toBe(5000);
  });

  it('treats an empty variable as unset', () => {
    expect(loadConfig({}, { REINS_PORT: '' }).port).toBe(3000);
  });

  it('splits the private openings on commas', () => {
    expect(
      loadConfig({}, { REINS_GATEWAY_ALLOW_PRIVATE: '10.0.0.0/8, 192.168.1.5:8443' }).gatewayAllowPrivate,
    ).toEqual(['10.0.0.0/8', '192.168.1.5:8443']);
  });

  it.each([
    [{ REINS_PORT: 'eighty' }, 'REINS_PORT (--port) must be a port number'],
    [{ REINS_ADMIN_PORT: '70000' }, 'REINS_ADMIN_PORT (--admin-port) must be a port number'],
    [
      { REINS_GATEWAY_INTERCEPT: 'sometimes' },
      'REINS_GATEWAY_INTERCEPT (--gateway-intercept) must be one of auto, always, never',
    ],
    [{ REINS_LOG_LEVEL: 'loud' }, 'REINS_LOG_LEVEL (--log-level) must be one of'],
    [{ REINS_ISSUER: 'not a url' }, 'REINS_ISSUER (--issuer) must be a URL'],
    [{ DATABASE_URL: 'mysql://x' }, 'DATABASE_URL (--database-url) must be a postgres://'],
  ])('refuses %o with a message naming the variable', (env, message) => {
    expect(() => loadConfig({}, env)).toThrow(ConfigError);
    expect(() => loadConfig({}, env)).toThrow(message);
  });
});
