// The CLI's one failure table (src/cli/failure.ts): every code of every domain error that reaches
// the command line, with the exit code scripts branch on (docs/cli.md, "Exit codes"). The
// expectations are typed as Record<Code, …>: a code added to a union fails to compile here
// until it has its row.
import { CommanderError } from 'commander';
import { describe, expect, it } from 'vitest';
import { AgentRunError, type AgentRunErrorCode } from '../../src/agent-run/errors.ts';
import { AdminCallError, type AdminCallErrorCode } from '../../src/cli/admin-call-error.ts';
import { CliError, ContextError, EXIT, type ExitCode, failureOf } from '../../src/cli/failure.ts';
import { ConfigError } from '../../src/config/load.ts';
import { InterceptionCaError, type InterceptionCaErrorCode } from '../../src/gateway/ca/errors.ts';
import { type LoadErrorCode, PolicyLoadError } from '../../src/policy/load.ts';
import { GatewayConfigError } from '../../src/runtime/gateway.ts';
import { StartError, type StartErrorCode } from '../../src/runtime/start-error.ts';
import { KeyEncryptionError, type KeyEncryptionErrorCode } from '../../src/secrets/encryption.ts';
import { StoreError, type StoreErrorCode } from '../../src/store/db.ts';

const START: Record<StartErrorCode, ExitCode> = { policy_invalid: EXIT.invalid, port_in_use: EXIT.usage };
const POLICY_LOAD: Record<LoadErrorCode, ExitCode> = {
  policy_dir_missing: EXIT.unavailable,
  policy_dir_empty: EXIT.invalid,
  policy_file_unreadable: EXIT.unavailable,
};
const STORE: Record<StoreErrorCode, ExitCode> = {
  database_unavailable: EXIT.unavailable,
  migration_checksum_mismatch: EXIT.invalid,
  migration_failed: EXIT.invalid,
};
const KEY_ENCRYPTION: Record<KeyEncryptionErrorCode, ExitCode> = {
  secret_key_missing: EXIT.invalid,
  secret_key_mismatch: EXIT.invalid,
  private_key_corrupt: EXIT.invalid,
  encryption_scheme_unknown: EXIT.invalid,
};
const INTERCEPTION_CA: Record<InterceptionCaErrorCode, ExitCode> = {
  ca_missing: EXIT.unavailable,
  ca_expired: EXIT.invalid,
  ca_key_mismatch: EXIT.invalid,
  invalid_host: EXIT.internal,
};
const AGENT_RUN: Record<AgentRunErrorCode, ExitCode> = {
  issuer_unreachable: EXIT.unavailable,
  issuer_mismatch: EXIT.invalid,
  token_refused: EXIT.invalid,
  token_response_invalid: EXIT.unavailable,
  key_unreadable: EXIT.unavailable,
  key_unsupported: EXIT.invalid,
  token_command_failed: EXIT.unavailable,
  token_command_output: EXIT.invalid,
  ca_unreadable: EXIT.unavailable,
  ca_invalid: EXIT.invalid,
  ca_unavailable: EXIT.unavailable,
  token_unavailable: EXIT.unavailable,
};
const ADMIN_CALL: Record<AdminCallErrorCode, ExitCode> = {
  server_unreachable: EXIT.unavailable,
  not_admin_api: EXIT.unavailable,
  credential_refused: EXIT.invalid,
  server_failed: EXIT.unavailable,
  request_refused: EXIT.internal,
};

/** One case per code: the error as a command would throw it, and its exit code. */
function cases<C extends string>(
  name: string,
  exits: Record<C, ExitCode>,
  make: (code: C) => Error,
): [string, Error, ExitCode][] {
  return (Object.entries(exits) as [C, ExitCode][]).map(([code, exit]) => [
    `${name} ${code}`,
    make(code),
    exit,
  ]);
}

const EVERY_CODE: [string, Error, ExitCode][] = [
  ['ConfigError invalid_config', new ConfigError('REINS_PORT must be a port number'), EXIT.usage],
  [
    'GatewayConfigError gateway_config',
    new GatewayConfigError('REINS_GATEWAY_ALLOW_PRIVATE entry'),
    EXIT.usage,
  ],
  ...cases('StartError', START, (code) => new StartError(code, 'why')),
  ...cases('PolicyLoadError', POLICY_LOAD, (code) => new PolicyLoadError(code, 'why')),
  ...cases('StoreError', STORE, (code) => new StoreError(code, 'why')),
  ...cases('KeyEncryptionError', KEY_ENCRYPTION, (code) => new KeyEncryptionError(code, 'why')),
  ...cases('InterceptionCaError', INTERCEPTION_CA, (code) => new InterceptionCaError(code, 'why')),
  ...cases('AgentRunError', AGENT_RUN, (code) => new AgentRunError(code, 'why')),
  ...cases('AdminCallError', ADMIN_CALL, (code) => new AdminCallError(code, 'why')),
];

describe('the CLI failure table', () => {
  it.each(EVERY_CODE)('%s has its exit code and is reported as its message, one line', (_, err, exit) => {
    expect(failureOf(err)).toEqual({ exitCode: exit, text: `reins: ${err.message}\n` });
  });

  it('prints every error of a refused policy before the line that says the start failed', () => {
    const err = new StartError('policy_invalid', 'policies: 2 errors', [
      { severity: 'error', file: 'acme.yaml', line: 3, column: 5, message: 'unknown key' },
      { severity: 'error', file: 'acme.yaml', line: 9, column: 1, message: 'duplicate agent' },
    ]);
    expect(failureOf(err)).toEqual({
      exitCode: EXIT.invalid,
      text:
        'acme.yaml:3:5: error: unknown key\n' +
        'acme.yaml:9:1: error: duplicate agent\n' +
        'reins: policies: 2 errors\n',
    });
  });

  it("gives a CliError's own exit code", () => {
    expect(failureOf(new CliError('--agent NAME is required', EXIT.usage))).toEqual({
      exitCode: EXIT.usage,
      text: 'reins: --agent NAME is required\n',
    });
  });

  it("words a domain error in its command's context and keeps the domain error's exit code", () => {
    const cause = new AgentRunError('issuer_unreachable', 'cannot reach http://127.0.0.1:9: ECONNREFUSED');
    const err = new ContextError(
      cause,
      'cannot fetch the interception CA',
      '; give --issuer URL, or --ca FILE',
    );
    expect(failureOf(err)).toEqual({
      exitCode: EXIT.unavailable,
      text:
        'reins: cannot fetch the interception CA: cannot reach http://127.0.0.1:9: ECONNREFUSED; ' +
        'give --issuer URL, or --ca FILE\n',
    });
  });

  it('gives a context around an unknown failure 70, or 3 when it says the database went away', () => {
    const bug = new ContextError(new TypeError('x is undefined'), 'apply failed and was rolled back');
    expect(failureOf(bug)).toEqual({
      exitCode: EXIT.internal,
      text: 'reins: apply failed and was rolled back: x is undefined\n',
    });
    const gone = Object.assign(new Error('terminating connection'), { code: '57P01' });
    expect(failureOf(new ContextError(gone, 'apply failed and was rolled back')).exitCode).toBe(
      EXIT.unavailable,
    );
  });

  it('reports anything else as an internal error, exit 70', () => {
    expect(failureOf(new TypeError('x is undefined'))).toEqual({
      exitCode: EXIT.internal,
      text: 'reins: internal error: x is undefined\n',
    });
    expect(failureOf('thrown text')).toEqual({
      exitCode: EXIT.internal,
      text: 'reins: internal error: thrown text\n',
    });
  });

  it.each([
    ['a usage error', new CommanderError(1, 'commander.unknownOption', 'x'), EXIT.usage],
    ['help asked for', new CommanderError(0, 'commander.helpDisplayed', '(outputHelp)'), EXIT.ok],
    ['the version asked for', new CommanderError(0, 'commander.version', '0.1.0'), EXIT.ok],
    ['a group without its subcommand', new CommanderError(1, 'commander.help', '(outputHelp)'), EXIT.usage],
    ['`reins help`', new CommanderError(0, 'commander.help', '(outputHelp)'), EXIT.ok],
  ])("leaves commander's %s printed as it is", (_, err, exit) => {
    expect(failureOf(err)).toEqual({ exitCode: exit, text: '' });
  });
});
