// Threat: a client assertion (private_key_jwt) or DPoP proof captured once (a log, a proxy, a
// compromised agent host) and replayed. oidc-provider remembers every jti it has seen through
// ReplayDetection.unique(), but that is a find followed by an upsert: N copies of one assertion
// sent at once all run their find before any upsert lands, and all N are accepted. With a real
// database (and even with PGlite, whose queries interleave across awaits) that window is wide
// open. See docs/adapter.md.
//
// The fix replaces unique() with one atomic statement (DbAdapter.claim: INSERT … ON CONFLICT …
// RETURNING). It keeps unique()'s contract, so each caller still turns `false` into its own
// OAuth error: `invalid_client` for client assertions, `invalid_dpop_proof` for DPoP proofs.
import { hash } from 'node:crypto';
import type Provider from 'oidc-provider';
import { AdapterError, DbAdapter } from './db-adapter.ts';

/**
 * Makes `provider.ReplayDetection.unique` atomic. Call once, right after `new Provider(…)` with
 * `adapter: createAdapterFactory(db)`. Throws AdapterError('foreign_adapter') when the provider
 * does not store through our adapter (the atomic claim would then protect nothing).
 */
export function installAtomicReplayDetection(provider: Provider): void {
  // provider.ReplayDetection is built once per provider and cached, so the override sticks.
  const model = provider.ReplayDetection;
  const adapter: unknown = model.adapter;
  if (!(adapter instanceof DbAdapter)) {
    throw new AdapterError(
      'foreign_adapter',
      'installAtomicReplayDetection needs the provider configured with adapter: createAdapterFactory(db)',
    );
  }
  model.unique = async (iss: string, jti: string, exp: number): Promise<boolean> => {
    // The same id oidc-provider derives (lib/models/replay_detection.js), so rows written by
    // either path collide as they should.
    const id = hash('sha256', `${iss}${jti}`, 'base64url');
    const now = Math.floor(Date.now() / 1000);
    return adapter.claim(id, { iss, jti: id, kind: 'ReplayDetection', iat: now, exp }, exp - now);
  };
}
