// Usage errors as docs/cli.md promises them, at every level of the command tree: one line on
// stderr, `reins: …`, exit 2 (failure.ts maps the CommanderError), commander's did-you-mean kept.
//
// Commander applies exitOverride and output settings only to the command they are called on;
// a subcommand added with addCommand() keeps its own defaults, so without this `reins policy
// valdate` printed commander's `error: …` and exited 1 from inside commander.
import type { Command } from 'commander';

/** Applies the usage-error settings to `command` and every subcommand below it. */
export function withUsageErrors(command: Command): Command {
  command.exitOverride();
  command.configureOutput({ outputError: (text, write) => write(usageLine(text, commandPath(command))) });
  for (const sub of command.commands) withUsageErrors(sub);
  return command;
}

/**
 * Commander's error text (`error: unknown option '--prot'\n(Did you mean --port?)\n`) as one
 * line: `reins: unknown option '--prot' (Did you mean --port?); see 'reins serve --help'`.
 */
export function usageLine(text: string, path: string): string {
  const message = text
    .replace(/^error: /, '')
    .split('\n')
    .map((part) => part.trim())
    .filter((part) => part !== '')
    .join(' ')
    .replace(/\.$/, '');
  return `reins: ${message}; see '${path} --help'\n`;
}

/** `reins policy validate` for the validate command. */
export function commandPath(command: Command): string {
  const names: string[] = [];
  for (let at: Command | null = command; at !== null; at = at.parent) names.unshift(at.name());
  return names.join(' ');
}
