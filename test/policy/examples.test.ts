import { createPrivateKey, createPublicKey } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { validatePolicies } from '../../src/policy/validate.ts';
import { EXAMPLES_DIR, exampleSources } from './support.ts';

describe('the shipped example policies', () => {
  const result = validatePolicies(exampleSources());

  it('validate without a single error or warning', () => {
    expect(result.diagnostics).toEqual([]);
    expect(result.model).not.toBeNull();
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
