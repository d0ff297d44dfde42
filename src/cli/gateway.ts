// `reins gateway`: runs the verifying gateway alone against the shared database, until SIGINT or
// SIGTERM. The settings are those of `reins serve` (src/config/settings.ts); the server's own
// (issuer, ports) tell the gateway which tokens to accept.
import { Command, Option } from 'commander';
import { ConfigError, loadConfig } from '../config/load.ts';
import { SETTINGS } from '../config/settings.ts';
import { createLogger } from '../runtime/logger.ts';
import { startGatewayOnly } from '../runtime/start.ts';
import { toCliError } from './database-options.ts';
import { CliError, EXIT } from './failure.ts';

export function gatewayCommand(): Command {
  const command = new Command('gateway')
    .description(
      'run only the verifying gateway on the shared database (policies, keys and revocations come from the server)',
    )
    .addHelpText(
      'after',
      '\nTokens are accepted from REINS_ISSUER for REINS_GATEWAY_RESOURCE. See docs/gateway.md.',
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
    const stopRequested = new Promise<NodeJS.Signals>((resolve) => {
      process.once('SIGINT', resolve);
      process.once('SIGTERM', resolve);
    });
    let running: Awaited<ReturnType<typeof startGatewayOnly>>;
    try {
      running = await startGatewayOnly(config, log);
    } catch (err) {
      log.flush();
      if (err instanceof Error && (err as { code?: unknown }).code === 'gateway_config') {
        throw new CliError(err.message, EXIT.usage);
      }
      throw toCliError(err);
    }
    process.stdout.write(
      `\nreins gateway is running at ${running.gateway.url} (health: ${running.admin.url}/readyz).\nStop with Ctrl-C.\n`,
    );
    const signal = await stopRequested;
    log.info({ signal }, 'stopping');
    await running.stop();
    log.flush();
  });
}
