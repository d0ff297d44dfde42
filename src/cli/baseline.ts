// `reins baseline show` (SPEC.md, "Monitoring and containment"): what monitoring has learnt of an
// agent — when it was first and last seen, its totals, every host it contacted with the methods
// and the rule that allowed it — and of the agent acting for each user. What is shown is the
// last checkpoint (src/runtime/monitoring.ts writes one every few seconds).
import { Command } from 'commander';
import type { HostSeen } from '../monitor/baseline.ts';
import { loadBaselines, type StoredBaseline } from '../monitor/baselines-store.ts';
import { addServerOption, adminCall, onServerOrDatabase, type ServerOptions } from './admin-client.ts';
import { addDatabaseOptions, type DatabaseOptions } from './database-options.ts';
import { CliError, EXIT } from './failure.ts';
import { formatTable } from './table.ts';

interface ShowOptions extends DatabaseOptions, ServerOptions {
  tenant: string;
  json?: boolean;
}

export function baselineCommand(): Command {
  return new Command('baseline')
    .description('what monitoring has learnt of an agent')
    .addCommand(showCommand());
}

function showCommand(): Command {
  const cmd = new Command('show')
    .description("print an agent's baseline: totals, and every host it contacted")
    .argument('<agent>', "the agent's client id")
    .requiredOption('--tenant <tenant>', "the agent's tenant")
    .option('--json', 'one JSON object per baseline (the agent, then the agent acting for each user)')
    .addHelpText(
      'after',
      '\nWhile `reins serve` holds the embedded database, the baseline comes from its admin API\n' +
        '(--server URL asks any server; docs/admin-api.md).\n',
    );
  return addServerOption(addDatabaseOptions(cmd)).action(async (agent: string, options: ShowOptions) => {
    const tenant = options.tenant;
    const baselines = await onServerOrDatabase(
      options,
      async (target) => {
        const query = new URLSearchParams({ tenant, agent });
        return (await adminCall<{ baselines: StoredBaseline[] }>(target, 'GET', `baselines?${query}`)).body
          .baselines;
      },
      (db) => loadBaselines(db, { tenant, agent }),
    );
    if (baselines.length === 0) {
      throw new CliError(
        `monitoring has learnt nothing of agent ${agent} of tenant ${tenant} yet: it learns once the tenant's policy has a monitoring: section and the agent sends traffic`,
        EXIT.invalid,
      );
    }
    process.stdout.write(formatBaselines(baselines, options.json === true));
  });
}

export function formatBaselines(baselines: readonly StoredBaseline[], json: boolean): string {
  if (json) return baselines.map((baseline) => `${JSON.stringify(baseline)}\n`).join('');
  const own = baselines.find((baseline) => baseline.key.user === null);
  const users = baselines.filter((baseline) => baseline.key.user !== null);
  const parts: string[] = [];
  if (own !== undefined) {
    const { key, snapshot } = own;
    parts.push(`agent ${key.agent} of tenant ${key.tenant}: ${totals(own)}`);
    parts.push(hostsTable(snapshot.hosts));
  }
  if (users.length > 0) {
    parts.push(
      formatTable([
        ['ACTING FOR', 'FIRST SEEN', 'LAST SEEN', 'REQUESTS', 'REFUSED', 'HOSTS'],
        ...users.map(({ key, snapshot }) => [
          key.user ?? '',
          iso(snapshot.firstSeen),
          iso(snapshot.lastSeen),
          String(snapshot.requests),
          String(snapshot.denials),
          String(Object.keys(snapshot.hosts).length),
        ]),
      ]),
    );
  }
  return `${parts.join('\n\n')}\n`;
}

function totals({ snapshot, updatedAt }: StoredBaseline): string {
  return (
    `first seen ${iso(snapshot.firstSeen)}, last seen ${iso(snapshot.lastSeen)}; ` +
    `${snapshot.requests} requests, ${snapshot.denials} refused, ${snapshot.bytesOut} bytes out ` +
    `(as of ${new Date(updatedAt).toISOString()})`
  );
}

function hostsTable(hosts: Readonly<Record<string, HostSeen>>): string {
  const entries = Object.entries(hosts).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  if (entries.length === 0) return 'no host contacted';
  return formatTable([
    ['HOST', 'FIRST SEEN', 'LAST SEEN', 'REQUESTS', 'METHODS', 'ALLOWED BY'],
    ...entries.map(([host, seen]) => [
      host,
      iso(seen.firstSeen),
      iso(seen.lastSeen),
      String(seen.requests),
      seen.methods.join(',') || '-',
      seen.rule ?? '(only refused)',
    ]),
  ]);
}

function iso(ms: number): string {
  return new Date(ms).toISOString();
}
