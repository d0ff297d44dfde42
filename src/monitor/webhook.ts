// What an alert's webhook carries (SPEC.md, "Monitoring and containment"): the JSON body, its
// signature, and when a failed delivery is tried again. Pure: no I/O, no clock.
import { createHmac } from 'node:crypto';
import type { AlertRecord } from './alerts-store.ts';

/** The body sent: the alert as `reins alerts list --json` prints it. */
export function webhookBody(alert: AlertRecord): string {
  return JSON.stringify(alert);
}

/**
 * `X-Reins-Signature`: `sha256=` and the hex HMAC-SHA256 of the exact body bytes with the
 * tenant's secret. A receiver recomputes it over the raw body (before any JSON parsing) and
 * compares in constant time; it should also drop an alert id it has already seen, since a
 * delivery whose answer was lost is sent again.
 */
export function webhookSignature(body: string, secret: string): string {
  return `sha256=${createHmac('sha256', secret).update(body).digest('hex')}`;
}

/** First retry after a second, doubling, at most every five minutes. */
export function retryDelayMs(attempts: number): number {
  return Math.min(300_000, 1_000 * 2 ** Math.max(0, Math.min(attempts - 1, 20)));
}
