// What can go wrong while `reins run` / `reins env` obtain a token or prepare the command's
// environment. One class, a closed union of codes; the CLI maps each code to an exit code.
// Messages never carry a token, a secret or key material.

export type AgentRunErrorCode =
  /** The issuer, its discovery document or its token endpoint could not be reached. */
  | 'issuer_unreachable'
  /** The discovery document names another issuer than the one asked (RFC 8414 §3.3). */
  | 'issuer_mismatch'
  /** The token endpoint answered with an OAuth error (wrong secret, unknown agent, …). */
  | 'token_refused'
  /** The token endpoint answered something that is not a token response. */
  | 'token_response_invalid'
  /** The --key file cannot be read. */
  | 'key_unreadable'
  /** The --key file is not a usable private key (encrypted, public, unsupported curve). */
  | 'key_unsupported'
  /** The --token-command failed: could not start, exited non-zero, or timed out. */
  | 'token_command_failed'
  /** The --token-command printed something that is not a JWT with a future `exp`. */
  | 'token_command_output'
  /** The --ca file cannot be read. */
  | 'ca_unreadable'
  /** The --ca file, or the bundle the issuer served, holds no usable CA certificate. */
  | 'ca_invalid'
  /** The issuer serves no interception CA (none yet, an error), or it cannot be kept on disk. */
  | 'ca_unavailable'
  /** No usable token arrived within the wait (the refresh keeps failing). */
  | 'token_unavailable';

export class AgentRunError extends Error {
  constructor(
    readonly code: AgentRunErrorCode,
    message: string,
  ) {
    super(message);
    this.name = 'AgentRunError';
  }
}
