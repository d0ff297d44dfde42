// The OAuth clients (agents and apps of the applied policy), served from memory and reloaded
// when a policy apply commits (NOTIFY reins_policy), so that removing an agent stops its next
// token request without a restart and the token path does no client SELECT.
//
// Client secrets are resolved at lookup time and never stored here or in the database:
// - `secret_env`: read from the environment on every lookup (rotating the variable and
//   restarting is the operator's way to change it; the policy never holds it);
// - `secret_hash`: oidc-provider can only compare a plaintext secret, so verifyHashedSecrets
//   (secret-hash.ts) checks the presented secret against the scrypt hash before oidc-provider
//   runs and vouches for it for that one request only (AsyncLocalStorage);
// - otherwise (variable unset, hash not verified in this request) the client's secret is a
//   random value made at startup that no caller knows: authentication fails closed with
//   `invalid_client`, exactly as for a wrong secret.
import { AsyncLocalStorage } from 'node:async_hooks';
import { randomBytes } from 'node:crypto';
import type { AdapterPayload } from 'oidc-provider';
import { POLICY_CHANNEL, readAppliedPolicy } from '../../policy/index.ts';
import type { Db } from '../../store/db.ts';
import { authOf, clientMetadata, indexClients, type RegisteredClient } from './metadata.ts';

/** A secret this request proved for a `secret_hash` client. */
export interface VouchedSecret {
  readonly clientId: string;
  readonly secret: string;
}

export interface ClientRegistryOptions {
  /** Where `secret_env` is looked up; process.env by default. */
  readonly env?: NodeJS.ProcessEnv;
  /** Told when a reload fails (the previous clients stay in force). */
  readonly onError?: (err: unknown) => void;
}

export class ClientRegistry {
  private clients = new Map<string, RegisteredClient>();
  private policyVersion: number | null = null;
  private unlisten: (() => Promise<void>) | null = null;
  private readonly listeners = new Set<(version: number | null) => void>();
  private readonly unknowable = randomBytes(32).toString('base64url');
  private readonly vouched = new AsyncLocalStorage<VouchedSecret>();
  private reloading: Promise<void> = Promise.resolve();

  private constructor(
    private readonly db: Db,
    private readonly options: ClientRegistryOptions,
  ) {}

  /** Loads the applied policy and follows every later apply. */
  static async open(db: Db, options: ClientRegistryOptions = {}): Promise<ClientRegistry> {
    const registry = new ClientRegistry(db, options);
    // Listen first: an apply committing between the read and the listen would otherwise be missed.
    registry.unlisten = await db.listen(POLICY_CHANNEL, () => {
      registry.reload().catch((err) => registry.options.onError?.(err));
    });
    await registry.reload();
    return registry;
  }

  /** The applied policy version the clients come from (null: nothing applied). */
  get version(): number | null {
    return this.policyVersion;
  }

  /** Re-reads the applied policy. Reloads run one after another, never interleaved. */
  reload(): Promise<void> {
    this.reloading = this.reloading
      .catch(() => undefined)
      .then(async () => {
        const applied = await readAppliedPolicy(this.db);
        this.clients = indexClients(applied.model);
        this.policyVersion = applied.version?.version ?? null;
        for (const listener of this.listeners) listener(this.policyVersion);
      });
    return this.reloading;
  }

  /** Called after every reload with the version now in force. Returns the unsubscribe. */
  onReload(listener: (version: number | null) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  lookup(clientId: string): RegisteredClient | undefined {
    return this.clients.get(clientId);
  }

  /** For the adapter's `findClient`: oidc-provider metadata, secret resolved now. */
  findClient = async (clientId: string): Promise<AdapterPayload | undefined> => {
    const client = this.clients.get(clientId);
    if (!client) return undefined;
    return clientMetadata(client, this.secretOf(clientId, client));
  };

  /** Runs `work` with `secret` vouched for `clientId` (its scrypt hash has been verified). */
  withVouchedSecret<T>(vouched: VouchedSecret, work: () => T): T {
    return this.vouched.run(vouched, work);
  }

  async close(): Promise<void> {
    const unlisten = this.unlisten;
    this.unlisten = null;
    await unlisten?.();
    await this.reloading.catch(() => undefined);
  }

  private secretOf(clientId: string, client: RegisteredClient): string | undefined {
    const auth = authOf(client);
    if (auth.method === 'private_key_jwt') return undefined;
    if (auth.secretEnv !== null) {
      const value = (this.options.env ?? process.env)[auth.secretEnv];
      return value !== undefined && value !== '' ? value : this.unknowable;
    }
    const vouched = this.vouched.getStore();
    if (auth.secretHash !== null && vouched?.clientId === clientId) return vouched.secret;
    return this.unknowable;
  }
}
