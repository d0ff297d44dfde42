// Introspection (RFC 7662), revocation (RFC 7009) and RFC 8414 discovery, answered from the
// token ledger. createProvider mounts them:
//
//   provider.use(ledgerEndpoints({ db, issuer, clients, keys }));
export {
  abilityFor,
  type Caller,
  may,
  type TokenAbility,
  type TokenAction,
  type TokenFacts,
} from './abilities.ts';
export { INACTIVE_REASONS, type InactiveReason, type Judgement, judge, type LedgerRow } from './judge.ts';
export {
  INTROSPECTION_PATH,
  type LedgerEndpointOptions,
  ledgerEndpoints,
  OAUTH_METADATA_PATH,
  REVOCATION_PATH,
} from './ledger-endpoints.ts';
export {
  authorizationServerMetadata,
  type ExtraMetadata,
  GRANT_TYPES_SUPPORTED,
  withExtraMetadata,
} from './metadata.ts';
