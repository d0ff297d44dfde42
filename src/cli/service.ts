// What `reins serve` and `reins gateway` share: every setting as a flag (src/config/settings.ts),
// and the life of a long-running process — load the settings, listen for SIGINT/SIGTERM before
// starting anything (a signal during start-up must still end in an orderly stop), start, say
// where it runs, stop in order on the signal.
import { type Command, Option } from 'commander';
import { ConfigError, loadConfig } from '../config/load.ts';
import { type Config, SETTINGS } from '../config/settings.ts';
import { createLogger, type Logger } from '../runtime/logger.ts';
import { CliError, EXIT } from './failure.ts';

/** Adds every setting as `--flag <value>`, naming its environment variable and default. */
export function addSettingOptions(command: Command): Command {
  for (const setting of SETTINGS) {
    const defaults = setting.default ? `; default ${setting.default}` : '';
    command.addOption(
      new Option(
        `${setting.flag} <${setting.placeholder}>`,
        `${setting.description} [${setting.env}${defaults}]`,
      ),
    );
  }
  return command;
}

export interface Service<R extends { stop(): Promise<void> }> {
  start(config: Config, log: Logger): Promise<R>;
  /** A start failure as the CLI error to report (one line, an exit code). */
  failure(err: unknown): unknown;
  /** What to print once running. */
  announce(running: R, config: Config): string;
  /** What SIGHUP does once running (serve: reload the policies); unset: SIGHUP is ignored. */
  reload?(running: R): Promise<unknown>;
}

export async function runService<R extends { stop(): Promise<void> }>(
  flags: Record<string, unknown>,
  service: Service<R>,
): Promise<void> {
  let config: Config;
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
  // SIGHUP is taken from the start: its default action would end the process, and a reload
  // asked for while starting happens once the start is done (it reads the files again).
  let hangup: (() => void) | undefined;
  let hungUp = false;
  const onHangup = () => {
    if (hangup) hangup();
    else hungUp = true;
  };
  process.on('SIGHUP', onHangup);
  let running: R;
  try {
    running = await service.start(config, log);
  } catch (err) {
    log.flush();
    // A wrong gateway setting (REINS_GATEWAY_ALLOW_PRIVATE, REINS_GATEWAY_UPSTREAM_CA).
    if (err instanceof Error && (err as { code?: unknown }).code === 'gateway_config') {
      throw new CliError(err.message, EXIT.usage);
    }
    process.off('SIGHUP', onHangup);
    throw service.failure(err);
  }
  const started = running;
  hangup = () => {
    log.info({ signal: 'SIGHUP' }, 'reloading');
    void service.reload?.(started);
  };
  if (hungUp) hangup();
  process.stdout.write(service.announce(running, config));
  const signal = await stopRequested;
  process.off('SIGHUP', onHangup);
  log.info({ signal }, 'stopping');
  await running.stop();
  log.flush();
}
