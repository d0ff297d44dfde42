// `reins gateway`: runs the verifying gateway alone against the shared database, until SIGINT or
// SIGTERM. The settings are those of `reins serve` (src/config/settings.ts); the server's own
// (issuer, ports) tell the gateway which tokens to accept.
import { Command } from 'commander';
import { startGatewayOnly } from '../runtime/start.ts';
import { addSettingOptions, runService } from './service.ts';

export function gatewayCommand(): Command {
  const command = new Command('gateway')
    .description(
      'run only the verifying gateway on the shared database (policies, keys and revocations come from the server)',
    )
    .addHelpText(
      'after',
      '\nTokens are accepted from REINS_ISSUER for REINS_GATEWAY_RESOURCE. See docs/gateway.md.',
    );
  return addSettingOptions(command).action((flags: Record<string, unknown>) =>
    runService(flags, {
      start: startGatewayOnly,
      announce: (running) =>
        `\nreins gateway is running at ${running.gateway.url} (health: ${running.admin.url}/readyz).\nStop with Ctrl-C.\n`,
    }),
  );
}
