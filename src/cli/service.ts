// What `reins serve` and `reins gateway` share: every setting as a flag (src/config/settings.ts),
// and the life of a long-running process — load the settings, listen for SIGINT/SIGTERM before
// starting anything (a signal during start-up must still end in an orderly stop), start, say
// where it runs, stop in order on the signal. A failure to start is thrown as it is: main.ts
// reports it through failure.ts, like any other command's.
import { type Command, Option } from 'commander';
import { loadConfig } from '../config/load.ts';
import { type Config, SETTINGS } from '../config/settings.ts';
import { createLogger, type Logger } from '../runtime/logger.ts';

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
  /** What to print once running. */
  announce(running: R, config: Config): string;
  /** What SIGHUP does once running (serve: reload the policies); unset: SIGHUP is ignored. */
  reload?(running: R): Promise<unknown>;
}

export async function runService<R extends { stop(): Promise<void> }>(
  flags: Record<string, unknown>,
  service: Service<R>,
): Promise<void> {
  const config = loadConfig(flags, process.env);
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
    // What was logged goes out before the line that says why the start failed.
    log.flush();
    process.off('SIGHUP', onHangup);
    throw err;
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
