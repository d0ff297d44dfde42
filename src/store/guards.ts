// Checks both database backends apply in the same way, so code that passes its tests on one
// behaves the same on the other.
import { AsyncLocalStorage } from 'node:async_hooks';

// Lower-case identifiers only: LISTEN takes an identifier (case-folded unless quoted) while
// pg_notify() takes a string, so only such names mean the same channel in both. The check also
// keeps a channel name from ever carrying SQL into the LISTEN statement.
const CHANNEL_NAME = /^[a-z_][a-z0-9_]{0,62}$/;

export function assertChannelName(channel: string): void {
  if (!CHANNEL_NAME.test(channel)) {
    throw new RangeError(
      `invalid channel name ${JSON.stringify(channel)}: use lower-case letters, digits and _ (at most 63)`,
    );
  }
}

interface OpenTransaction {
  readonly owner: object;
  open: boolean;
  readonly outer: OpenTransaction | undefined;
}

const currentTransaction = new AsyncLocalStorage<OpenTransaction>();

/** Runs a transaction's work inside a scope that `assertNoOpenTransaction` can see. */
export async function runInTransactionScope<T>(owner: object, work: () => Promise<T>): Promise<T> {
  const scope: OpenTransaction = { owner, open: true, outer: currentTransaction.getStore() };
  try {
    return await currentTransaction.run(scope, work);
  } finally {
    scope.open = false;
  }
}

/**
 * Refuses to use a database directly from inside one of its own open transactions. On PGlite,
 * one connection, such a query would wait for the transaction forever; on PostgreSQL it would run
 * on another connection and miss the transaction's own writes. Either way it is a bug, so both
 * backends refuse it the same way: pass the transaction handle down instead.
 */
export function assertNoOpenTransaction(owner: object, what: string): void {
  for (let scope = currentTransaction.getStore(); scope; scope = scope.outer) {
    if (scope.open && scope.owner === owner) {
      throw new Error(
        `${what} was called on the database inside one of its own transactions: use the transaction handle`,
      );
    }
  }
}

/**
 * Calls a notification listener outside any transaction scope (a NOTIFY is delivered while the
 * notifying transaction commits, and the listener will want to query) and keeps its failures
 * from becoming unhandled rejections that would end the process.
 */
export function deliver(
  listener: (payload: string) => void,
  payload: string,
  onError: (err: unknown) => void,
): void {
  currentTransaction.exit(() => {
    Promise.resolve()
      .then(() => listener(payload))
      .catch(onError);
  });
}
