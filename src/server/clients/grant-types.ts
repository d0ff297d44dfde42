// The grant types a client may be registered for (RFC 7591 §2, client metadata `grant_types`),
// by their registered names. Every client lists both (metadata.ts says why); the token exchange
// handler (exchange/grant.ts) registers itself under its name. Kept apart from both so that the
// clients need nothing from the exchange that uses them.

/** RFC 6749 §4.4: an agent obtains its own token. */
export const CLIENT_CREDENTIALS_GRANT = 'client_credentials';

/** RFC 8693 §2.1: a token for a subject (a user, or an earlier token's), acted on by an agent. */
export const TOKEN_EXCHANGE_GRANT = 'urn:ietf:params:oauth:grant-type:token-exchange';
