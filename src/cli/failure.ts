// How the command line reports failure: one line on stderr, no stack trace, and an exit code
// that a script can branch on. Every domain error that reaches the CLI carries a `code` from
// its own closed union; this table maps each to an exit code.

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

/** An error the CLI knows how to explain in one line. */
export class CliError extends Error {
  constructor(
    message: string,
    readonly exitCode: ExitCode,
  ) {
    super(message);
    this.name = 'CliError';
  }
}
