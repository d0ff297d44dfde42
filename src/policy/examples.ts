// Example credentials (`auth.example_secret`): secrets the shipped example policies publish on
// purpose, so that what `reins serve` prints works when pasted. PURE. Read from the validated
// files, never stored: the database, the model and plans never hold a plaintext secret.
import { parse } from 'yaml';
import type { AuthMethod } from './shape.ts';
import type { PolicySource } from './source.ts';

export interface ExampleCredential {
  readonly tenant: string;
  readonly clientId: string;
  readonly method: Exclude<AuthMethod, 'private_key_jwt'>;
  readonly secret: string;
}

/** Every agent with an example_secret, in file order. Call on sources that validated. */
export function exampleCredentials(sources: readonly PolicySource[]): ExampleCredential[] {
  const found: ExampleCredential[] = [];
  for (const source of sources) {
    const data = parse(source.text) as {
      tenant?: unknown;
      agents?: Record<string, { auth?: { method?: unknown; example_secret?: unknown } }>;
    } | null;
    if (!data || typeof data.tenant !== 'string' || !data.agents) continue;
    for (const [clientId, agent] of Object.entries(data.agents)) {
      const method = agent?.auth?.method;
      const secret = agent?.auth?.example_secret;
      if (typeof secret !== 'string') continue;
      if (method !== 'client_secret_basic' && method !== 'client_secret_post') continue;
      found.push({ tenant: data.tenant, clientId, method, secret });
    }
  }
  return found;
}
