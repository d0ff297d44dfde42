// `reins env`: the variables `reins run` gives its command, for places where nothing can run
// beside the agent (containers, CI jobs). With no local proxy, the token travels in the proxy
// URL as the Basic password (SPEC.md, "The gateway"), and nothing refreshes it.
import { Command, Option } from 'commander';
import { saveFetchedCa, writeBundle } from '../agent-run/ca-bundle.ts';
import {
  type CaFiles,
  formatVariables,
  proxyVariables,
  VARIABLE_FORMATS,
  type VariableFormat,
} from '../agent-run/environment.ts';
import { addTokenOptions, gatewayUrl, interceptionCa, type TokenOptions, tokenObtainer } from './run.ts';

interface EnvOptions extends TokenOptions {
  format: VariableFormat;
  ca?: string;
  bundle?: string;
}

export function envCommand(): Command {
  const command = new Command('env')
    .description(
      'print the proxy and CA variables for an agent, with a token in the proxy URL (containers, CI; not refreshed)',
    )
    .addOption(new Option('--format <format>', 'output format').choices(VARIABLE_FORMATS).default('shell'))
    .option(
      '--ca <file>',
      "the gateway interception CA (PEM): sets NODE_EXTRA_CA_CERTS; default: the issuer's /ca.pem, kept under ~/.cache/reins",
    )
    .option(
      '--bundle <file>',
      'write the usual roots plus the CA to <file> and point SSL_CERT_FILE, REQUESTS_CA_BUNDLE, CURL_CA_BUNDLE at it',
    );
  addTokenOptions(command).addHelpText(
    'after',
    '\nExamples:\n' +
      '  eval "$(reins env --agent billing-agent --secret-env ACME_BILLING_AGENT_SECRET)"\n' +
      '  reins env --agent research-agent --key agent.pem --format dotenv > agent.env\n' +
      '  docker run --env-file agent.env …\n' +
      '\nThe token expires (stderr says when) and nothing refreshes it: run reins env again, or use\n' +
      'reins run where a process can run beside the agent. The output holds the token: treat it\n' +
      'as a secret. See docs/agents.md.',
  );
  return command.action(async (options: EnvOptions) => {
    const gateway = gatewayUrl(options.gateway);
    const obtain = await tokenObtainer(options);
    const { token, expiresAt } = await obtain();
    // The variables outlive this process, so a CA fetched from the issuer is kept in a file.
    const source = await interceptionCa(options);
    const certificate = source.path ?? (await saveFetchedCa(options.issuer, source.pem, process.env));
    const bundle =
      options.bundle === undefined ? undefined : await writeBundle(options.bundle, source.pem, process.env);
    const ca: CaFiles = { certificate, bundle };
    // Any non-empty user name; the gateway takes the token from the password.
    const proxyUrl = `http://agent:${token}@${gateway.host}`;
    process.stdout.write(formatVariables(proxyVariables(proxyUrl, ca), options.format));
    const seconds = Math.max(0, Math.round((expiresAt - Date.now()) / 1000));
    process.stderr.write(
      `reins: the token in these variables expires at ${new Date(expiresAt).toISOString()} (in ${seconds} s); ` +
        'nothing refreshes it: run reins env again before then, or use reins run\n',
    );
    if (ca.bundle === undefined) {
      process.stderr.write(
        'reins: SSL_CERT_FILE, REQUESTS_CA_BUNDLE and CURL_CA_BUNDLE are not set: they replace a tool’s roots; ' +
          'give --bundle FILE, or add the CA to the system trust store\n',
      );
    }
  });
}
