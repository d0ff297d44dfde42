// `reins serve`: runs reins until SIGINT/SIGTERM. Every setting is a flag or an environment
// variable (src/config/settings.ts; docs/configuration.md). SIGHUP, and file changes with
// --watch, reload REINS_POLICIES (src/runtime/policy-follower.ts).
import { resolve } from 'node:path';
import { Command } from 'commander';
import type { Config } from '../config/settings.ts';
import { type Running, start } from '../runtime/start.ts';
import { nextSteps } from './next-steps.ts';
import { addSettingOptions, runService } from './service.ts';

export function serveCommand(): Command {
  const command = new Command('serve')
    .description('run the reins service: applies the policies, then serves until SIGINT or SIGTERM')
    .option('--watch', 'reload the policy directory when its files change (SIGHUP always reloads it)')
    .addHelpText(
      'after',
      '\nEvery option can also be set through the environment variable named in brackets.\n' +
        'SIGHUP re-reads REINS_POLICIES: a valid change is applied and its plan logged, an invalid one\n' +
        'is refused with its errors and the applied version stays. See docs/configuration.md.',
    );
  return addSettingOptions(command).action((flags: Record<string, unknown>) =>
    runService(flags, {
      start: (config, log) => start(config, log, { watch: flags.watch === true }),
      reload: (running) => running.policies.reload('SIGHUP'),
      announce: (running, config) => announce(running, config),
    }),
  );
}

function announce(running: Running, config: Config): string {
  return nextSteps(
    {
      issuer: config.issuer,
      authUrl: running.auth.url,
      gatewayUrl: running.gateway.url,
      adminUrl: running.admin.url,
      resource: config.gatewayResource,
      cliAdminFlags: cliAdminFlags(config, running.admin.url),
      pid: process.pid,
    },
    running.model(),
    running.policies.examples(),
    running.policies.startLine,
  );
}

/** How `reins audit` in another terminal (same directory) finds this server, if it can. */
function cliAdminFlags(config: Config, adminUrl: string): string | null {
  if (config.databaseUrl) return ''; // it reads the shared database itself
  // No handle file in memory: the admin API, with the operator's own REINS_ADMIN_TOKEN.
  if (config.dataDir === 'memory') return config.adminToken ? `--server ${adminUrl}` : null;
  return resolve(config.dataDir) === resolve('./.reins') ? '' : `--data-dir ${config.dataDir}`;
}
