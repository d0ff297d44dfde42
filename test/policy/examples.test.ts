import { createPrivateKey, createPublicKey } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { exampleCredentials } from '../../src/policy/examples.ts';
import { verifySecret } from '../../src/policy/secret-hash.ts';
import { validatePolicies } from '../../src/policy/validate.ts';
import { EXAMPLES_DIR, exampleSources } from './support.ts';

describe('the shipped example policies', () => {
  const result = validatePolicies(exampleSources());

  it('validate without an error, warning only that the billing agent publishes its example secret', () => {
    expect(result.diagnostics).toEqual([
      expect.objectContaining({
        severity: 'warning',
        file: expect.stringMatching(/acme\.yaml$/),
        message: expect.stringContaining("agent 'billing-agent' publishes its secret (example_secret)"),
      }),
    ]);
    expect(result.model).not.toBeNull();
  });

  it('publish one example secret, the plaintext of the hash the server checks, and keep it out of the model', () => {
    expect(exampleCredentials(exampleSources())).toEqual([
      {
        tenant: 'acme',
        clientId: 'billing-agent',
        method: 'client_secret_basic',
        secret: 'reins-example-billing-secret',
      },
    ]);
    const billing = result.model?.tenants
      .find((t) => t.id === 'acme')
      ?.agents.find((a) => a.clientId === 'billing-agent');
    expect(billing?.auth.secretHash).toMatch(/^\$scrypt\$/);
    expect(verifySecret('reins-example-billing-secret', billing?.auth.secretHash ?? '')).toBe(true);
    expect(JSON.stringify(result.model)).not.toContain('reins-example-billing-secret');
  });

  it('declare two tenants, acme federating its public catalogue to globex', () => {
    const tenants = result.model?.tenants ?? [];
    expect(tenants.map((t) => t.id)).toEqual(['acme', 'globex']);
    const acme = tenants[0];
    expect(acme?.federation).toEqual([
      { tenant: 'globex', egress: ['GET https://acme.api.saas.example/public'] },
    ]);
  });

  it('give the billing agent Stripe and the research agent Wikipedia', () => {
    const acme = result.model?.tenants.find((t) => t.id === 'acme');
    const agent = (id: string) => acme?.agents.find((a) => a.clientId === id);
    expect(agent('billing-agent')?.effectiveEgress).toContain('GET,POST https://api.stripe.com/v1');
    expect(agent('research-agent')?.effectiveEgress).toEqual(['GET https://**.wikipedia.org/']);
    expect(acme?.apps.find((a) => a.clientId === 'support-portal')?.mayDelegateTo).toEqual([
      'billing-agent',
      'research-agent',
    ]);
  });

  it('reference every client secret by environment variable or hash, never in clear', () => {
    for (const tenant of result.model?.tenants ?? []) {
      for (const client of [...tenant.agents, ...tenant.apps]) {
        const { auth } = client;
        const references = [auth.jwks, auth.jwksUri, auth.secretEnv, auth.secretHash].filter(
          (x) => x !== null,
        );
        expect(references, client.clientId).toHaveLength(1);
      }
    }
  });

  it.each([
    [
      'research-agent.pem',
      'acme',
      (t: ReturnType<typeof tenantOf>) => t?.agents.find((a) => a.clientId === 'research-agent')?.auth.jwks,
    ],
    ['acme-idp.pem', 'acme', (t: ReturnType<typeof tenantOf>) => t?.trustedIssuers[0]?.jwks],
  ])('ship the demo private key %s matching the public key in the policy', (file, tenant, jwksOf) => {
    const pem = readFileSync(`${EXAMPLES_DIR}keys/${file}`, 'utf8');
    const derived = createPublicKey(createPrivateKey(pem)).export({ format: 'jwk' });
    const published = jwksOf(tenantOf(tenant))?.keys[0];
    expect({ x: published?.x, y: published?.y, crv: published?.crv }).toEqual({
      x: derived.x,
      y: derived.y,
      crv: derived.crv,
    });
  });

  function tenantOf(id: string) {
    return result.model?.tenants.find((t) => t.id === id);
  }
});
