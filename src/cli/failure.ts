// How the command line reports failure: one line on stderr, `reins: …`, no stack trace, and an
// exit code that a script can branch on (docs/cli.md, "Exit codes").
//
// This file is the one place that decides both. Commands throw the domain error they met — each
// carries a `code` from its own closed union — or a CliError for what only the command line
// knows (a bad option value); they never pick an exit code for a domain error themselves.
// main.ts catches once and asks failureOf(). FAILURES below has one row per error class and one
// exit code per code: a code added to a union does not compile until it has its exit code here.
import { CommanderError } from 'commander';
import { AgentRunError } from '../agent-run/errors.ts';
import { ConfigError } from '../config/load.ts';
import { InterceptionCaError } from '../gateway/ca/errors.ts';
import { formatDiagnostic, PolicyLoadError } from '../policy/index.ts';
import { GatewayConfigError } from '../runtime/gateway.ts';
import { StartError } from '../runtime/start-error.ts';
import { KeyEncryptionError } from '../secrets/encryption.ts';
import { StoreError } from '../store/db.ts';
import { isUnavailable } from '../store/pg-errors.ts';
import { AdminCallError } from './admin-call-error.ts';

export const EXIT = {
  ok: 0,
  /** The input was read but is wrong (a policy with mistakes). */
  invalid: 1,
  /** The command line itself is wrong (unknown option, missing argument). */
  usage: 2,
  /** A dependency is unavailable (database unreachable, file missing). */
  unavailable: 3,
  /** A bug: something that should not happen happened. */
  internal: 70,
} as const;

export type ExitCode = (typeof EXIT)[keyof typeof EXIT];

/** A failure only the command line knows (a bad option value), with its exit code. */
export class CliError extends Error {
  constructor(
    message: string,
    readonly exitCode: ExitCode,
  ) {
    super(message);
    this.name = 'CliError';
  }
}

/**
 * A failure in the words of the command it happened in: `<prefix>: <the cause's message><suffix>`
 * ("cannot fetch the interception CA: …; give --issuer URL, or --ca FILE"). The exit code is the
 * cause's, from the table; a cause the table does not know is a bug (70), unless it says the
 * database went away mid-way (store/pg-errors.ts): then 3.
 */
export class ContextError extends Error {
  constructor(cause: unknown, prefix: string, suffix = '') {
    super(`${prefix}: ${messageOf(cause)}${suffix}`, { cause });
    this.name = 'ContextError';
  }
}

/** What a failure means for the command line. */
export interface Failure {
  readonly exitCode: ExitCode;
  /** What to write on stderr; '' when it is written already (commander's usage errors, usage.ts). */
  readonly text: string;
}

interface Row {
  /** The failure when `err` is this row's error, else undefined. */
  readonly failure: (err: unknown) => Failure | undefined;
}

/** A row: an error class, an exit code for each of its codes, and its text if not one line. */
function row<E extends Error & { readonly code: string }>(
  error: abstract new (...args: never[]) => E,
  exits: { readonly [C in E['code']]: ExitCode },
  text: (err: E) => string = line,
): Row {
  return {
    failure: (err) =>
      err instanceof error ? { exitCode: exits[err.code as E['code']], text: text(err) } : undefined,
  };
}

const FAILURES: readonly Row[] = [
  // A setting is wrong (src/config/load.ts; REINS_GATEWAY_ALLOW_PRIVATE, REINS_GATEWAY_UPSTREAM_CA).
  row(ConfigError, { invalid_config: EXIT.usage }),
  row(GatewayConfigError, { gateway_config: EXIT.usage }),
  // `serve` and `gateway` could not start (src/runtime/start.ts). The port is a setting to move;
  // the policy's every error is printed first, as `policy validate` prints it.
  row(StartError, { port_in_use: EXIT.usage, policy_invalid: EXIT.invalid }, (err) =>
    [...err.diagnostics.map((d) => `${formatDiagnostic(d)}\n`), line(err)].join(''),
  ),
  // A missing or unreadable policy directory is "unavailable"; one without policy files is a
  // wrong input, since applying nothing would remove every tenant.
  row(PolicyLoadError, {
    policy_dir_missing: EXIT.unavailable,
    policy_file_unreadable: EXIT.unavailable,
    policy_dir_empty: EXIT.invalid,
  }),
  // The migrations on disk that do not fit the database are a wrong input: retrying will not help.
  row(StoreError, {
    database_unavailable: EXIT.unavailable,
    migration_checksum_mismatch: EXIT.invalid,
    migration_failed: EXIT.invalid,
  }),
  // Stored private keys (signing keys, the interception CA) that the secret given cannot open.
  row(KeyEncryptionError, {
    secret_key_missing: EXIT.invalid,
    secret_key_mismatch: EXIT.invalid,
    private_key_corrupt: EXIT.invalid,
    encryption_scheme_unknown: EXIT.invalid,
  }),
  row(InterceptionCaError, {
    ca_missing: EXIT.unavailable,
    ca_expired: EXIT.invalid,
    ca_key_mismatch: EXIT.invalid,
    // No command issues leaves: a bug if it ever reaches the command line.
    invalid_host: EXIT.internal,
  }),
  // `reins run` and `reins env` before the command starts; `ca export --issuer`.
  row(AgentRunError, {
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
  }),
  // A running server's admin API (admin-client.ts).
  row(AdminCallError, {
    server_unreachable: EXIT.unavailable,
    not_admin_api: EXIT.unavailable,
    credential_refused: EXIT.invalid,
    server_failed: EXIT.unavailable,
    request_refused: EXIT.internal,
  }),
];

/** The exit code and the text for stderr of whatever a command threw. Pure. */
export function failureOf(err: unknown): Failure {
  if (err instanceof CommanderError) return { exitCode: commanderExit(err), text: '' };
  return explained(err) ?? { exitCode: EXIT.internal, text: `reins: internal error: ${messageOf(err)}\n` };
}

/** Whether `err` is a failure the table explains (anything else is reported as a bug). */
export function isExplained(err: unknown): boolean {
  return explained(err) !== undefined;
}

function explained(err: unknown): Failure | undefined {
  if (err instanceof CliError) return { exitCode: err.exitCode, text: line(err) };
  if (err instanceof ContextError) {
    const cause = explained(err.cause)?.exitCode;
    const exitCode = cause ?? (isUnavailable(err.cause) ? EXIT.unavailable : EXIT.internal);
    return { exitCode, text: line(err) };
  }
  for (const { failure } of FAILURES) {
    const found = failure(err);
    if (found !== undefined) return found;
  }
  return undefined;
}

/**
 * Commander has printed its message already (usage.ts), or the help, or the version. `reins
 * policy` without a subcommand prints its help on stderr with exitCode 1: a usage error; `reins
 * help` and `reins policy help` print it with 0.
 */
function commanderExit(err: CommanderError): ExitCode {
  if (err.code === 'commander.helpDisplayed' || err.code === 'commander.version') return EXIT.ok;
  if (err.code === 'commander.help') return err.exitCode === 0 ? EXIT.ok : EXIT.usage;
  return EXIT.usage;
}

function line(err: Error): string {
  return `reins: ${err.message}\n`;
}

function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
