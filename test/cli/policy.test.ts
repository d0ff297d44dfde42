// The `reins policy` commands as a user runs them: a child process, exit codes, stdout/stderr.
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseSecretHash } from '../../src/policy/secret-hash.ts';
import { runReins } from '../support/run-reins.ts';

// The embedded database in a temporary directory, whatever the environment says.
const LOCAL = { DATABASE_URL: '', REINS_DATA_DIR: undefined };
const DIAGNOSTIC = /^[^\s:]+\.yaml:\d+:\d+: (error|warning): .+$/;

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'reins-policy-cli-'));
  await writeFile(
    join(dir, 'acme.yaml'),
    [
      'tenant: acme',
      'agents:',
      '  billing-agent:',
      '    auth: { method: client_secret_basic, secret: hunter2 }',
      '    egres: [payments]',
      '',
    ].join('\n'),
  );
  await writeFile(
    join(dir, 'globex.yaml'),
    'tenant: globex\nfederation: [{ tenant: acme, egress: ["ftp://x/"] }]\n',
  );
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('reins policy validate', () => {
  it('exits 0 on the shipped policies', async () => {
    const run = await runReins(['policy', 'validate', 'policies/'], LOCAL);
    // The one warning: the quickstart's billing agent publishes its (example) secret.
    expect(run.stderr).toMatch(
      /^policies\/acme\.yaml:\d+:\d+: warning: agent 'billing-agent' publishes its secret \(example_secret\)[^\n]*\n$/,
    );
    expect(run.stdout).toContain('policies/: valid with 1 warning: 2 tenants');
    expect(run.code).toBe(0);
  });

  it('exits 1 on a policy with mistakes, one file:line:column line per error and no stack trace', async () => {
    const run = await runReins(['policy', 'validate', dir], LOCAL);
    expect(run.code).toBe(1);
    const lines = run.stderr.trimEnd().split('\n');
    const diagnostics = lines.slice(0, -1);
    expect(diagnostics.map((l) => l.replace(`${dir}/`, ''))).toEqual([
      expect.stringMatching(/^acme\.yaml:3:3: error: agent 'billing-agent' is missing 'egress'/),
      expect.stringMatching(/^acme\.yaml:4:42: error: plaintext secret 'secret'/),
      expect.stringMatching(/^acme\.yaml:5:5: error: unknown key 'egres' .*did you mean 'egress'\?/),
      expect.stringMatching(
        /^globex\.yaml:2:40: error: invalid rule 'ftp:\/\/x\/' in federation\[0\]\.egress\[0\]: the scheme must be https or http/,
      ),
    ]);
    for (const line of diagnostics) expect(line.replace(`${dir}/`, '')).toMatch(DIAGNOSTIC);
    expect(lines.at(-1)).toBe(`reins: ${dir}: 4 errors, 0 warnings`);
    expect(run.stderr).not.toMatch(/\n\s+at /);
    expect(run.stdout).toBe('');
  });

  it('reports two unknown keys of one file and a bad rule of another in one run, and exits 1', async () => {
    const two = await mkdtemp(join(tmpdir(), 'reins-policy-two-'));
    try {
      await writeFile(
        join(two, 'keys.yaml'),
        [
          'tenant: acme',
          'agents:',
          '  billing-agent:',
          '    auth: { method: client_secret_basic, secret_env: BILLING }',
          '    egress: []',
          '    tokn_ttl: 60',
          '    may_akt: []',
          '',
        ].join('\n'),
      );
      await writeFile(
        join(two, 'rule.yaml'),
        [
          'tenant: globex',
          'integrations:',
          '  shipping: ["POST https://api.shipping.example:99999/labels"]',
          '',
        ].join('\n'),
      );
      const run = await runReins(['policy', 'validate', two], LOCAL);
      expect(run.code).toBe(1);
      const lines = run.stderr.trimEnd().split('\n');
      expect(lines.map((l) => l.replace(`${two}/`, ''))).toEqual([
        expect.stringMatching(/^keys\.yaml:6:5: error: unknown key 'tokn_ttl' .*did you mean 'token_ttl'\?$/),
        expect.stringMatching(/^keys\.yaml:7:5: error: unknown key 'may_akt' .*did you mean 'may_act'\?$/),
        expect.stringMatching(
          /^rule\.yaml:3:49: error: invalid rule 'POST https:\/\/api\.shipping\.example:99999\/labels' in integration 'shipping'\[0\]: .*port/,
        ),
        `reins: ${two}: 3 errors, 0 warnings`,
      ]);
      expect(run.stdout).toBe('');
    } finally {
      await rm(two, { recursive: true, force: true });
    }
  });

  it('exits 3 when the directory does not exist', async () => {
    const run = await runReins(['policy', 'validate', join(dir, 'missing')], LOCAL);
    expect(run.code).toBe(3);
    expect(run.stderr).toBe(`reins: ${join(dir, 'missing')}: no such policy directory\n`);
  });
});

describe('reins policy plan and apply', () => {
  it('plan, apply, apply again and plan again on an empty database', async () => {
    const data = await mkdtemp(join(tmpdir(), 'reins-policy-db-'));
    try {
      const db = ['--data-dir', data];
      const plan = await runReins(['policy', 'plan', 'policies/', ...db], LOCAL);
      expect(plan.code).toBe(0);
      expect(plan.stdout).toContain('against an empty database');
      expect(plan.stdout).toContain('  + agent billing-agent');

      const apply = await runReins(['policy', 'apply', 'policies/', ...db], LOCAL);
      expect(apply.code).toBe(0);
      expect(apply.stdout).toMatch(/applied version 1 \(sha256:[0-9a-f]{64}\): 2 tenants/);

      const again = await runReins(['policy', 'apply', 'policies/', ...db], LOCAL);
      expect(again.code).toBe(0);
      expect(again.stdout).toMatch(/^already applied, version 1 \(sha256:[0-9a-f]{64}\); nothing to do\n$/);

      const after = await runReins(['policy', 'plan', 'policies/', ...db], LOCAL);
      expect(after.stdout).toContain('No changes.');
    } finally {
      await rm(data, { recursive: true, force: true });
    }
  }, 60_000); // four CLI processes, each opening the embedded database

  it('apply refuses a policy with mistakes before touching the database', async () => {
    const run = await runReins(['policy', 'apply', dir, '--data-dir', 'memory'], LOCAL);
    expect(run.code).toBe(1);
    expect(run.stdout).toBe('');
  });
});

describe('reins policy hash-secret', () => {
  it('generates a secret and prints a secret_hash that validation accepts', async () => {
    const run = await runReins(['policy', 'hash-secret', '--generate'], LOCAL);
    expect(run.code).toBe(0);
    const hash = /secret_hash: "(.+)"/.exec(run.stdout)?.[1] ?? '';
    expect(parseSecretHash(hash).ok).toBe(true);
  });

  it('refuses an empty stdin with a usage error', async () => {
    const run = await runReins(['policy', 'hash-secret'], LOCAL);
    expect(run.code).toBe(2);
    expect(run.stderr).toContain('no secret on stdin');
  });

  it('explains every subcommand in --help', async () => {
    for (const sub of ['validate', 'plan', 'apply', 'hash-secret']) {
      const run = await runReins(['policy', sub, '--help'], LOCAL);
      expect(run.code).toBe(0);
      expect(run.stdout).toContain('Usage: reins policy');
    }
  });
});
