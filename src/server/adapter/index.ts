// oidc-provider's storage on the reins database. The server configuration does, in order:
//
//   const provider = new Provider(issuer, { adapter: createAdapterFactory(db, { findClient }), … });
//   installAtomicReplayDetection(provider);
//   const stopSweeper = startSweeper(db, { onError });   // on shutdown: await stopSweeper()
export {
  AdapterError,
  type AdapterErrorCode,
  type AdapterOptions,
  createAdapterFactory,
  DbAdapter,
  GRANT_BOUND_MODELS,
} from './db-adapter.ts';
export { installAtomicReplayDetection } from './replay-detection.ts';
export { type SweeperOptions, type SweepOptions, startSweeper, sweepExpired } from './sweeper.ts';
