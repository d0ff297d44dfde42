// The ledger endpoints' one decision, as a table: one row per reason, and a guard that every
// reason has a row.
import type { JWTPayload } from 'jose';
import { describe, expect, it } from 'vitest';
import { abilityFor } from '../../../src/server/endpoints/abilities.ts';
import {
  INACTIVE_REASONS,
  type JudgeInput,
  judge,
  type LedgerRow,
} from '../../../src/server/endpoints/judge.ts';

const NOW = new Date('2026-01-01T00:00:00Z');
const NOW_S = NOW.getTime() / 1000;
const CLAIMS: JWTPayload = {
  iss: 'http://127.0.0.1:3000',
  aud: 'https://gateway.reins.test',
  sub: 'billing-agent',
  client_id: 'billing-agent',
  tenant: 'acme',
  scope: 'egress:payments',
  jti: 'j1',
  iat: NOW_S - 60,
  exp: NOW_S + 60,
  authorization_details: [{ type: 'egress', locations: ['https://api.stripe.com/'] }],
};
const ROW: LedgerRow = {
  tenant: 'acme',
  client_id: 'billing-agent',
  expires_at: new Date((NOW_S + 60) * 1000),
  revoked_at: null,
  ancestor_revoked: false,
};
const PORTAL = abilityFor({ clientId: 'support-portal', tenant: 'acme' });
const BILLING = abilityFor({ clientId: 'billing-agent', tenant: 'acme' });
const GLOBEX = abilityFor({ clientId: 'shipping-agent', tenant: 'globex' });

const base: JudgeInput = { action: 'introspect', claims: CLAIMS, row: ROW, ability: PORTAL, now: NOW };

const inactive: Record<(typeof INACTIVE_REASONS)[number], Partial<JudgeInput>[]> = {
  malformed: [{ claims: undefined }, { claims: { ...CLAIMS, jti: undefined } }],
  expired: [{ claims: { ...CLAIMS, exp: NOW_S } }, { row: { ...ROW, expires_at: NOW } }],
  unknown: [{ row: undefined }],
  revoked: [
    { row: { ...ROW, revoked_at: new Date(NOW.getTime() - 1000) } },
    { row: { ...ROW, ancestor_revoked: true } },
  ],
  ledger_mismatch: [{ claims: { ...CLAIMS, tenant: 'globex' } }, { claims: { ...CLAIMS, client_id: 'x' } }],
  forbidden: [
    { ability: GLOBEX },
    { action: 'revoke', ability: PORTAL },
    { action: 'revoke', ability: GLOBEX },
  ],
};

describe('judge', () => {
  for (const [reason, cases] of Object.entries(inactive)) {
    cases.forEach((overrides, i) => {
      it(`answers inactive for reason ${reason} (case ${i + 1})`, () => {
        expect(judge({ ...base, ...overrides })).toEqual({ active: false, reason });
      });
    });
  }

  it('has a row for every inactive reason', () => {
    for (const reason of INACTIVE_REASONS) expect(inactive[reason].length).toBeGreaterThan(0);
  });

  it('answers an active token to any client of its tenant with the RFC 7662 claims', () => {
    const judgement = judge(base);
    expect(judgement).toEqual({
      active: true,
      jti: 'j1',
      answer: { active: true, token_type: 'Bearer', ...CLAIMS },
    });
  });

  it('lets the client the token was issued to revoke it', () => {
    expect(judge({ ...base, action: 'revoke', ability: BILLING }).active).toBe(true);
  });

  it('does not repeat claims outside RFC 7662 and the token profile', () => {
    const judgement = judge({ ...base, claims: { ...CLAIMS, secret_thing: 1 } });
    expect(judgement.active && 'secret_thing' in judgement.answer).toBe(false);
  });
});
