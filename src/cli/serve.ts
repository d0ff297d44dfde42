// `reins serve`: runs reins until SIGINT/SIGTERM. Every setting is a flag or an environment
// variable (src/config/settings.ts; docs/configuration.md).
import { Command, Option } from 'commander';
import { ConfigError, loadConfig } from '../config/load.ts';
import { SETTINGS } from '../config/settings.ts';
import { formatDiagnostic } from '../policy/index.ts';
import { createLogger } from '../runtime/logger.ts';
import { StartError, start } from '../runtime/start.ts';
import { toCliError } from './database-options.ts';
import { CliError, EXIT } from './failure.ts';
import { policyErrorToCli } from './policy-errors.ts';

export function serveCommand(): Command {
  const command = new Command('serve')
    .description('run the reins service: applies the policies, then serves until SIGINT or SIGTERM')
    .addHelpText(
      'after',
      '\nEvery option can also be set through the environment variable named in brackets.\nSee docs/configuration.md.',
    );
  for (const setting of SETTINGS) {
    const defaults = setting.default ? `; default ${setting.default}` : '';
    command.addOption(
      new Option(
        `${setting.flag} <${setting.placeholder}>`,
        `${setting.description} [${setting.env}${defaults}]`,
      ),
    );
  }
  return command.action(async (flags: Record<string, unknown>) => {
    let config: ReturnType<typeof loadConfig>;
    try {
      config = loadConfig(flags, process.env);
    } catch (err) {
      if (err instanceof ConfigError) throw new CliError(err.message, EXIT.usage);
      throw err;
    }
    const log = createLogger(config.logLevel);
    // Listen for the stop signals before starting anything: a SIGTERM during start-up must still
    // end in an orderly stop (the start completes, then everything closes), not a hard kill.
    const stopRequested = new Promise<NodeJS.Signals>((resolve) => {
      process.once('SIGINT', resolve);
      process.once('SIGTERM', resolve);
    });
    let running: Awaited<ReturnType<typeof start>>;
    try {
      running = await start(config, log);
    } catch (err) {
      log.flush();
      if (err instanceof Error && (err as { code?: unknown }).code === 'gateway_config') {
        throw new CliError(err.message, EXIT.usage);
      }
      if (err instanceof StartError) {
        for (const d of err.diagnostics) process.stderr.write(`${formatDiagnostic(d)}\n`);
        throw new CliError(err.message, EXIT.invalid);
      }
      throw policyErrorToCli(toCliError(err));
    }
    process.stdout.write(
      nextSteps(running.auth.url, running.admin.url, running.gateway.url, config.gatewayResource),
    );

    const signal = await stopRequested;
    log.info({ signal }, 'stopping');
    await running.stop();
    log.flush();
  });
}

function nextSteps(authUrl: string, adminUrl: string, gatewayUrl: string, resource: string): string {
  return [
    '',
    'reins is running.',
    `  a token for the example billing agent (its secret comes from ACME_BILLING_AGENT_SECRET):`,
    `    curl -s -u "billing-agent:$ACME_BILLING_AGENT_SECRET" -d grant_type=client_credentials \\`,
    `      --data-urlencode resource=${resource} ${authUrl}/token`,
    `  the keys that verify it:  curl -s ${authUrl}/jwks`,
    `  through the gateway (${gatewayUrl}), with that token in TOKEN:`,
    `    curl -s --proxy ${gatewayUrl} --proxy-header "Proxy-Authorization: Bearer $TOKEN" http://example.com/`,
    `    (refused: 403 egress_denied, no_matching_rule; the agent may reach https://api.stripe.com/v1/ only)`,
    `  health:   curl -s ${adminUrl}/readyz`,
    `  metrics:  curl -s ${adminUrl}/metrics`,
    '',
    'Stop with Ctrl-C.',
    '',
  ].join('\n');
}
