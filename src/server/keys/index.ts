// The signing keys' public API on one screen. docs/keys.md explains the life cycle; how a private
// key is stored (encrypted under REINS_SECRET_KEY) is src/secrets/encryption.ts, shared with the
// gateway's interception CA.
export {
  chooseSigningKey,
  isPublished,
  KEY_STATES,
  type KeyRecord,
  type KeyState,
  planRetirement,
  planRotation,
  publishedKeys,
  type RetirementDecision,
  type RetirementReason,
  type Transition,
} from './rotation.ts';
export {
  DEFAULT_RETIRE_GRACE_MS,
  type EnsureOptions,
  type EnsureResult,
  ensureSigningKey,
  type KeyInfo,
  type KeySet,
  listKeys,
  loadKeys,
  loadPublicJwks,
  type RotateOptions,
  type RotationResult,
  retireExpiredKeys,
  rotateKeys,
  SIGNING_ALG,
} from './store.ts';
