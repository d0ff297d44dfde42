// `reins serve`: runs reins until SIGINT/SIGTERM. Every setting is a flag or an environment
// variable (src/config/settings.ts; docs/configuration.md).
import { Command } from 'commander';
import { formatDiagnostic } from '../policy/index.ts';
import { StartError, start } from '../runtime/start.ts';
import { toCliError } from './database-options.ts';
import { CliError, EXIT } from './failure.ts';
import { policyErrorToCli } from './policy-errors.ts';
import { addSettingOptions, runService } from './service.ts';

export function serveCommand(): Command {
  const command = new Command('serve')
    .description('run the reins service: applies the policies, then serves until SIGINT or SIGTERM')
    .addHelpText(
      'after',
      '\nEvery option can also be set through the environment variable named in brackets.\nSee docs/configuration.md.',
    );
  return addSettingOptions(command).action((flags: Record<string, unknown>) =>
    runService(flags, {
      start,
      failure: (err) => {
        if (err instanceof StartError) {
          for (const d of err.diagnostics) process.stderr.write(`${formatDiagnostic(d)}\n`);
          return new CliError(err.message, EXIT.invalid);
        }
        return policyErrorToCli(toCliError(err));
      },
      announce: (running, config) =>
        nextSteps(running.auth.url, running.admin.url, running.gateway.url, config.gatewayResource),
    }),
  );
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
