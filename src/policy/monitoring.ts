// A tenant's `monitoring:` and an agent's `budget:` → their models (SPEC.md, "Monitoring and
// containment"; docs/monitoring.md): durations in milliseconds, sizes in bytes, with the checks
// the schema cannot express. A detection the tenant does not declare is left out of the model,
// never set to `undefined`, so the model reads back from the database's jsonb unchanged.
import {
  DEFAULT_LEARNING_PERIOD_MS,
  type DetectionName,
  parseDuration,
  parseSize,
} from '../monitor/policy.ts';
import { describe } from './describe.ts';
import { type Diagnostic, error } from './diagnostic.ts';
import type { NodePath } from './document.ts';
import type { BudgetModel, MonitoringModel, WebhookModel } from './model.ts';
import { formatSize } from './quantities.ts';
import type { AgentData, MonitoringData, WebhookData } from './shape.ts';
import type { Located } from './tenants.ts';

/** The shortest window a detection may count in: a window of 0s holds no event. */
export const MIN_WINDOW_MS = 1_000;

/** The largest size counted exactly (9 PB, below Number.MAX_SAFE_INTEGER). */
const MAX_SIZE = 9_000_000e9;

export function compileMonitoring(
  monitoring: Located<MonitoringData> | null,
  out: Diagnostic[],
): MonitoringModel | null {
  if (!monitoring) return null;
  const { value, file, path } = monitoring;
  const d = value.detections ?? {};
  const within = (name: DetectionName, text: string): number => {
    const at = [...path, 'detections', name, 'within'];
    const ms = parseDuration(text) ?? 0; // the schema admits only what parseDuration reads
    if (ms < MIN_WINDOW_MS) {
      out.push(
        error(
          file.locate(at),
          `${describe(at)} is ${text}: a window of no time holds no event, so the detection would never fire; write at least 1s, e.g. 1m`,
        ),
      );
    }
    return ms;
  };
  const learning = value.learning_period;
  return {
    learningPeriodMs: learning === undefined ? DEFAULT_LEARNING_PERIOD_MS : (parseDuration(learning) ?? 0),
    ...(d.new_destination && { newDestination: { response: d.new_destination.response } }),
    ...(d.destination_burst && {
      destinationBurst: {
        newHosts: d.destination_burst.new_hosts,
        withinMs: within('destination_burst', d.destination_burst.within),
        response: d.destination_burst.response,
      },
    }),
    ...(d.denial_spike && {
      denialSpike: {
        denials: d.denial_spike.denials,
        withinMs: within('denial_spike', d.denial_spike.within),
        response: d.denial_spike.response,
      },
    }),
    ...(d.bytes_out_spike && {
      bytesOutSpike: {
        factor: d.bytes_out_spike.factor,
        withinMs: within('bytes_out_spike', d.bytes_out_spike.within),
        response: d.bytes_out_spike.response,
      },
    }),
    ...(d.forbidden_address && { forbiddenAddress: { response: d.forbidden_address.response } }),
    ...(d.new_method && { newMethod: { response: d.new_method.response } }),
    webhook: value.alerts
      ? webhookModel(value.alerts.webhook, { file, path: [...path, 'alerts', 'webhook', 'url'] }, out)
      : null,
  };
}

/**
 * The webhook as a canonical URL. No user:password@ (the URL is stored, and shown by plan: the
 * receiver authenticates alerts by their signature, keyed by secret_env) and no #fragment (never
 * sent, so it can only mislead).
 */
function webhookModel(
  webhook: WebhookData,
  at: Pick<Located<unknown>, 'file' | 'path'>,
  out: Diagnostic[],
): WebhookModel {
  const where = () => at.file.locate(at.path);
  const name = describe(at.path);
  const url = URL.canParse(webhook.url) ? new URL(webhook.url) : null;
  if (url === null || (url.protocol !== 'https:' && url.protocol !== 'http:')) {
    out.push(
      error(where(), `${name} '${webhook.url}' is not a URL; write e.g. https://hooks.example.com/reins`),
    );
    return { url: webhook.url, secretEnv: webhook.secret_env };
  }
  if (url.username !== '' || url.password !== '') {
    out.push(
      error(
        where(),
        `${name} must not carry a user name or password (user:password@): the URL is stored and shown by plan; ` +
          'remove them, the receiver checks each alert by its X-Reins-Signature (keyed by secret_env)',
      ),
    );
  }
  if (webhook.url.includes('#')) {
    out.push(error(where(), `${name} must not have a #fragment (it is never sent); remove it`));
  }
  return { url: url.href, secretEnv: webhook.secret_env };
}

export function compileBudget(agent: Located<AgentData>, out: Diagnostic[]): BudgetModel | null {
  const budget = agent.value.budget;
  if (!budget) return null;
  return {
    requestsPerMinute: budget.requests_per_minute ?? null,
    bytesOutPerHour:
      budget.bytes_out_per_hour === undefined
        ? null
        : bytes(budget.bytes_out_per_hour, agent, [...agent.path, 'budget', 'bytes_out_per_hour'], out),
  };
}

function bytes(text: string | number, agent: Located<AgentData>, path: NodePath, out: Diagnostic[]): number {
  const value = parseSize(text) ?? 0; // the schema admits only what parseSize reads
  const at = agent.file.locate(path);
  if (value === 0) {
    out.push(
      error(
        at,
        `${describe(path)} is ${String(text)}: a budget of 0 bytes would refuse the agent's requests; ` +
          "raise it, or take the destinations out of the agent's egress",
      ),
    );
  } else if (value > MAX_SIZE) {
    out.push(
      error(at, `${describe(path)} '${String(text)}' is too large; write at most ${formatSize(MAX_SIZE)}`),
    );
  }
  return value;
}
