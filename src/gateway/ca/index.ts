// The interception CA's public API on one screen. docs/interception-ca.md explains it.
//
//   await ensureInterceptionCa(db, { secretKey, now: new Date(), warn });  // first start creates it
//   const leaves = new LeafCache(await loadSigningCa(db, { secretKey, now: new Date() }));
//   tls: SNICallback / TLSSocket secureContext ← leaves.secureContextFor(connectHost)
export {
  CA_EXPIRY_WARNING_MS,
  CA_VALIDITY_MS,
  type CaInfo,
  type CaRotationResult,
  CLOCK_SKEW_MS,
  DEFAULT_CA_OVERLAP_MS,
  type EnsureCaOptions,
  type EnsureCaResult,
  ensureInterceptionCa,
  exportTrustBundle,
  type LoadCaOptions,
  listInterceptionCas,
  loadSigningCa,
  type PortableSigningCa,
  portableSigningCa,
  type RotateCaOptions,
  rotateInterceptionCa,
  type SigningCa,
  signingCaFrom,
  type TrustBundle,
} from './authority.ts';
export { InterceptionCaError, type InterceptionCaErrorCode } from './errors.ts';
export {
  DEFAULT_LEAF_CACHE_SIZE,
  type IssuedLeaf,
  type IssueLeafOptions,
  issueLeaf,
  LEAF_VALIDITY_MS,
  LeafCache,
  type LeafCacheOptions,
  type LeafHost,
  normaliseLeafHost,
} from './leaf.ts';
export {
  CA_STATES,
  type CaRecord,
  type CaState,
  caState,
  chooseSigningCa,
  isTrusted,
  overlapEnd,
  type SigningChoice,
  trustedCas,
} from './lifecycle.ts';
