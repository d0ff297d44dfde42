// LISTEN on PostgreSQL through one dedicated connection, kept outside the pool so that a
// long-lived listener never takes a query slot.
//
// A notification is only a hint. When the connection drops, notifications sent until it is back
// are lost, so after every reconnect each listener is called once with an empty payload: "you may
// have missed something, re-read the state you care about" (for a revocation listener: poll the
// revocation feed from its last sequence number). A listener must treat any call that way.
import pg from 'pg';
import { assertChannelName, deliver } from './guards.ts';
import { unavailable } from './pg-errors.ts';

type Listener = (payload: string) => void;

const FIRST_RETRY_MS = 100;
const LONGEST_RETRY_MS = 5_000;

export class PgListener {
  readonly #config: pg.ClientConfig;
  readonly #url: string;
  readonly #onError: (err: unknown) => void;
  readonly #listeners = new Map<string, Set<Listener>>();
  #client: pg.Client | undefined;
  #connecting: Promise<pg.Client> | undefined;
  // The LISTEN statements sent on the current connection, so a second subscriber to a channel
  // waits for the first one's LISTEN instead of returning before it took effect.
  #listening = new Map<string, Promise<void>>();
  #retryTimer: NodeJS.Timeout | undefined;
  #retryDelay = FIRST_RETRY_MS;
  #closed = false;

  constructor(url: string, config: pg.ClientConfig, onError: (err: unknown) => void) {
    this.#url = url;
    this.#config = config;
    this.#onError = onError;
  }

  async listen(channel: string, listener: Listener): Promise<() => Promise<void>> {
    assertChannelName(channel);
    if (this.#closed) throw new Error('the database is closed');
    let listeners = this.#listeners.get(channel);
    if (!listeners) {
      listeners = new Set();
      this.#listeners.set(channel, listeners);
    }
    listeners.add(listener);
    try {
      await this.#listenOn(await this.#connect(), channel);
    } catch (err) {
      this.#remove(channel, listener);
      throw unavailable(this.#url, err);
    }
    let subscribed = true;
    return async () => {
      if (!subscribed) return;
      subscribed = false;
      await this.#unlisten(channel, listener);
    };
  }

  async close(): Promise<void> {
    this.#closed = true;
    clearTimeout(this.#retryTimer);
    const client = this.#client ?? (await this.#connecting?.catch(() => undefined));
    this.#client = undefined;
    await client?.end().catch(() => undefined);
  }

  #remove(channel: string, listener: Listener): boolean {
    const listeners = this.#listeners.get(channel);
    listeners?.delete(listener);
    if (listeners?.size !== 0) return false;
    this.#listeners.delete(channel);
    return true;
  }

  async #unlisten(channel: string, listener: Listener): Promise<void> {
    if (!this.#remove(channel, listener)) return;
    this.#listening.delete(channel);
    // If the connection is down there is nothing to undo: a reconnect listens only on the
    // channels that still have listeners.
    await this.#client?.query(`UNLISTEN "${channel}"`).catch(() => undefined);
  }

  #listenOn(client: pg.Client, channel: string): Promise<void> {
    let done = this.#listening.get(channel);
    if (!done) {
      done = client.query(`LISTEN "${channel}"`).then(() => undefined);
      this.#listening.set(channel, done);
      done.catch(() => this.#listening.delete(channel));
    }
    return done;
  }

  #connect(): Promise<pg.Client> {
    if (this.#client) return Promise.resolve(this.#client);
    this.#connecting ??= this.#open().finally(() => {
      this.#connecting = undefined;
    });
    return this.#connecting;
  }

  async #open(): Promise<pg.Client> {
    const client = new pg.Client(this.#config);
    // Without an 'error' handler a dropped connection would end the process.
    client.on('error', (err) => this.#lost(client, err));
    client.on('end', () => this.#lost(client, new Error('the listener connection ended')));
    client.on('notification', (msg) => {
      for (const listener of this.#listeners.get(msg.channel) ?? []) {
        deliver(listener, msg.payload ?? '', this.#onError);
      }
    });
    try {
      await client.connect();
    } catch (err) {
      client.removeAllListeners('end');
      await client.end().catch(() => undefined);
      throw err;
    }
    if (this.#closed) {
      await client.end().catch(() => undefined);
      throw new Error('the database is closed');
    }
    this.#client = client;
    this.#listening = new Map();
    await Promise.all([...this.#listeners.keys()].map((channel) => this.#listenOn(client, channel)));
    return client;
  }

  #lost(client: pg.Client, err: unknown): void {
    if (client !== this.#client) return;
    this.#client = undefined;
    this.#listening = new Map();
    if (this.#closed) return;
    this.#onError(unavailable(this.#url, err));
    client.end().catch(() => undefined);
    this.#retryDelay = FIRST_RETRY_MS;
    this.#scheduleReconnect();
  }

  #scheduleReconnect(): void {
    if (this.#closed || this.#listeners.size === 0 || this.#retryTimer) return;
    // Jitter keeps many gateways from reconnecting in lock step after a server restart.
    const delay = this.#retryDelay * (0.5 + Math.random() / 2);
    this.#retryTimer = setTimeout(() => {
      this.#retryTimer = undefined;
      this.#reconnect();
    }, delay);
    this.#retryTimer.unref();
  }

  #reconnect(): void {
    if (this.#closed || this.#listeners.size === 0) return;
    this.#connect().then(
      () => {
        this.#retryDelay = FIRST_RETRY_MS;
        for (const listeners of this.#listeners.values()) {
          for (const listener of listeners) deliver(listener, '', this.#onError);
        }
      },
      (err: unknown) => {
        this.#onError(unavailable(this.#url, err));
        this.#retryDelay = Math.min(this.#retryDelay * 2, LONGEST_RETRY_MS);
        this.#scheduleReconnect();
      },
    );
  }
}
