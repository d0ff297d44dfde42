// Which backend a process uses: PostgreSQL when DATABASE_URL is set (what several processes
// share), else the embedded PGlite in the data directory (`memory`: nothing kept on disk), run in
// a thread of its own (pglite-worker.ts) so that its engine never stalls a thread serving requests
// (docs/decisions.md).
import type { Db } from './db.ts';
import { openPg } from './pg.ts';
import { openPgliteWorker } from './pglite-worker.ts';

export interface DbConfig {
  databaseUrl?: string | undefined;
  dataDir: string;
  /** Told of failures outside any query (dropped connections); they never end the process. */
  onBackgroundError?: (err: unknown) => void;
}

export function openDb(config: DbConfig): Promise<Db> {
  const { databaseUrl, dataDir, onBackgroundError } = config;
  const options = onBackgroundError ? { onBackgroundError } : {};
  // An empty DATABASE_URL (`DATABASE_URL= reins serve`) means "not set", as shells intend it.
  return databaseUrl ? openPg(databaseUrl, options) : openPgliteWorker(dataDir, options);
}
