// Why a call to a running server's admin API failed (admin-client.ts). A closed union, like every
// domain error the CLI reports; failure.ts gives each code its exit code.

export type AdminCallErrorCode =
  /** The server could not be reached (refused, unresolvable, timed out). */
  | 'server_unreachable'
  /** Something answered, but not with the admin API's JSON (another service on that port). */
  | 'not_admin_api'
  /** The server answered 401: the credential in REINS_ADMIN_TOKEN (or admin.json) is not its own. */
  | 'credential_refused'
  /** The server answered 5xx: it is running but cannot do it now (its database is down). */
  | 'server_failed'
  /** The server answered another non-success status (a proxy's 403 or 413, a request it rejects). */
  | 'request_refused';

export class AdminCallError extends Error {
  constructor(
    readonly code: AdminCallErrorCode,
    message: string,
  ) {
    super(message);
    this.name = 'AdminCallError';
  }
}
