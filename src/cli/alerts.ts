// `reins alerts list` (SPEC.md, "Monitoring and containment"): what monitoring found and did,
// newest first — a table for a reader, or one JSON object per line with --json. On the running
// server's admin API when there is one (admin-client.ts), else on the database.
import { Command } from 'commander';
import { type AlertFilter, type AlertRecord, selectAlerts } from '../monitor/alerts-store.ts';
import { addServerOption, adminCall, onServerOrDatabase, type ServerOptions } from './admin-client.ts';
import { countOption, sinceOption } from './arguments.ts';
import { addDatabaseOptions, type DatabaseOptions } from './database-options.ts';
import { formatTable } from './table.ts';

interface ListOptions extends DatabaseOptions, ServerOptions {
  tenant?: string;
  agent?: string;
  since?: string;
  limit: string;
  json?: boolean;
}

export function alertsCommand(): Command {
  return new Command('alerts')
    .description("monitoring's findings and what was done about them")
    .addCommand(listCommand());
}

function listCommand(): Command {
  const cmd = new Command('list')
    .description('print the alerts that match the filters, newest first')
    .option('--tenant <tenant>', 'only this tenant')
    .option('--agent <agent>', 'only this agent')
    .option(
      '--since <when>',
      'only alerts at or after this: a duration back from now (30m, 1h, 2d) or an ISO 8601 time',
    )
    .option('--limit <n>', 'at most this many alerts', '100')
    .option(
      '--json',
      'one JSON object per line: id, time, tenant, agent, user, detection, response, summary, evidence, outcome',
    )
    .addHelpText(
      'after',
      '\nWhile `reins serve` holds the embedded database, the alerts come from its admin API\n' +
        '(--server URL asks any server; docs/admin-api.md). docs/monitoring.md explains each detection.\n',
    );
  return addServerOption(addDatabaseOptions(cmd)).action(async (options: ListOptions) => {
    const filter: AlertFilter = {
      tenant: options.tenant,
      agent: options.agent,
      since: sinceOption(options.since),
      limit: countOption('--limit', options.limit, 1),
    };
    const alerts = await onServerOrDatabase(
      options,
      async (target) => {
        const query = new URLSearchParams({ limit: String(filter.limit) });
        if (filter.tenant !== undefined) query.set('tenant', filter.tenant);
        if (filter.agent !== undefined) query.set('agent', filter.agent);
        if (filter.since !== undefined) query.set('since', filter.since.toISOString());
        return (await adminCall<{ alerts: AlertRecord[] }>(target, 'GET', `alerts?${query}`)).body.alerts;
      },
      (db) => selectAlerts(db, filter),
    );
    process.stdout.write(formatAlerts(alerts, options.json === true));
  });
}

/** The alerts as printed: a table (or a line saying there are none), or JSON lines. */
export function formatAlerts(alerts: readonly AlertRecord[], json: boolean): string {
  if (json) return alerts.map((alert) => `${JSON.stringify(alert)}\n`).join('');
  if (alerts.length === 0) return 'no alerts\n';
  const rows = [
    ['ID', 'TIME', 'TENANT', 'AGENT', 'DETECTION', 'RESPONSE', 'DONE', 'SUMMARY'],
    ...alerts.map((alert) => [
      String(alert.id),
      alert.time,
      alert.tenant,
      alert.user === null ? alert.agent : `${alert.agent} for ${alert.user}`,
      alert.detection,
      alert.response,
      done(alert),
      alert.summary,
    ]),
  ];
  return `${formatTable(rows)}\n`;
}

/** What the response did, in a word or two. */
function done(alert: AlertRecord): string {
  const { outcome } = alert;
  if (outcome.error !== undefined) return 'failed';
  if (outcome.revoked !== undefined) return `revoked ${outcome.revoked.length}`;
  if (outcome.quarantined !== undefined) return outcome.quarantined ? 'quarantined' : 'was quarantined';
  return alert.response === 'alert' ? '-' : 'pending';
}
