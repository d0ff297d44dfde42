// The OAuth clients: agents and apps of the applied policy, in memory, reloaded on every apply.
//
//   const clients = await ClientRegistry.open(db, { onError });
//   clients.findClient        // the adapter's findClient (createProvider wires it)
//   clients.lookup(clientId)  // { kind: 'agent' | 'app', tenant, agent | app }
//   await clients.close()

export { checkAssertionLifetime, type LifetimeCheck, MAX_ASSERTION_LIFETIME } from './assertion-lifetime.ts';
export {
  bindDeclaredSecretMethod,
  clientAuthRefused,
  presentedSecretMethod,
  type SecretMethod,
  secretMethodMismatch,
} from './declared-method.ts';
export { CLIENT_CREDENTIALS_GRANT, TOKEN_EXCHANGE_GRANT } from './grant-types.ts';
export {
  authOf,
  clientIdOf,
  clientMetadata,
  indexClients,
  type RegisteredClient,
} from './metadata.ts';
export { ClientRegistry, type ClientRegistryOptions, type VouchedSecret } from './registry.ts';
export { type PresentedSecret, verifyHashedSecrets } from './secret-hash.ts';
