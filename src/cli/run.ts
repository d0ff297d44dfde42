// `reins run`: runs an agent's command unchanged, its HTTP(S) traffic sent through the gateway
// with the agent's token, which a local proxy obtains and refreshes (src/agent-run/,
// docs/agents.md). Exits with the command's exit code. The token options are shared with
// `reins env` (env.ts).
import { Command, Option } from 'commander';
import { type CaSource, readCa, temporaryCaFiles } from '../agent-run/ca-bundle.ts';
import { fetchInterceptionCa, plainHttpOffLoopback } from '../agent-run/ca-fetch.ts';
import { runChild } from '../agent-run/child.ts';
import { loadAssertionSigner } from '../agent-run/client-assertion.ts';
import { childEnvironment, proxyVariables } from '../agent-run/environment.ts';
import { AgentRunError } from '../agent-run/errors.ts';
import { startLocalProxy } from '../agent-run/local-proxy.ts';
import { tokenCommand } from '../agent-run/token-command.ts';
import { clientCredentials } from '../agent-run/token-endpoint.ts';
import { type ObtainToken, TokenSource, type TokenSourceEvent } from '../agent-run/token-source.ts';
import { CliError, ContextError, EXIT } from './failure.ts';

export const DEFAULT_GATEWAY = 'http://127.0.0.1:3128';
export const DEFAULT_ISSUER = 'http://127.0.0.1:3000';

export interface TokenOptions {
  agent?: string;
  secretEnv?: string;
  secretMethod?: string;
  key?: string;
  kid?: string;
  tokenCommand?: string;
  scope?: string;
  gateway: string;
  issuer: string;
}

const TOKEN_HELP =
  '\nThe token, one of:\n' +
  '  --secret-env VAR     a client secret, read from the variable VAR (never give a secret\n' +
  '                       on the command line: `ps` shows it), sent as the agent is declared:\n' +
  '                       client_secret_basic (default) or, with --secret-method post,\n' +
  '                       client_secret_post\n' +
  '  --key FILE           private_key_jwt with a PEM (PKCS#8) private key: P-256 (ES256),\n' +
  '                       P-384, P-521, Ed25519 (EdDSA) or RSA (RS256); --kid names its key id\n' +
  '  --token-command CMD  run CMD (by the shell) for each token: it prints the token, e.g. a\n' +
  '                       delegated token an app obtained by token exchange\n';

/** The options that say where the token comes from and where the gateway is. */
export function addTokenOptions(command: Command): Command {
  return command
    .option('--agent <name>', "the agent's client id")
    .option('--secret-env <VAR>', "environment variable holding the agent's client secret")
    .addOption(
      new Option('--secret-method <method>', 'how to send the secret: as the agent is declared in the policy')
        .choices(['basic', 'post'])
        .default('basic'),
    )
    .option('--key <file>', "the agent's private key (PEM, PKCS#8) for private_key_jwt")
    .option('--kid <kid>', 'key id to put in the assertion header (with --key)')
    .option('--token-command <cmd>', 'shell command that prints a token (instead of client credentials)')
    .option('--scope <scopes>', 'narrow the token to these egress:<integration> scopes')
    .addOption(
      new Option('--gateway <url>', 'the reins gateway').env('REINS_GATEWAY_URL').default(DEFAULT_GATEWAY),
    )
    .addOption(
      new Option('--issuer <url>', 'the reins authorization server')
        .env('REINS_ISSUER')
        .default(DEFAULT_ISSUER),
    )
    .addHelpText('after', TOKEN_HELP);
}

/** The gateway URL, checked: http://host[:port] and nothing else. */
export function gatewayUrl(text: string): URL {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new CliError(`--gateway ${text} is not a URL; write http://host:port`, EXIT.usage);
  }
  if (url.protocol !== 'http:' || url.username || url.password || url.pathname !== '/' || url.search) {
    throw new CliError(
      `--gateway ${text}: write http://host:port (the gateway speaks plain HTTP)`,
      EXIT.usage,
    );
  }
  return url;
}

/** Where each token comes from, from the options; usage mistakes are CliErrors. */
export async function tokenObtainer(options: TokenOptions): Promise<ObtainToken> {
  const sources = [options.secretEnv, options.key, options.tokenCommand].filter((s) => s !== undefined);
  if (sources.length !== 1) {
    throw new CliError('give exactly one of --secret-env VAR, --key FILE or --token-command CMD', EXIT.usage);
  }
  if (options.kid !== undefined && options.key === undefined) {
    throw new CliError('--kid goes with --key', EXIT.usage);
  }
  if (options.tokenCommand !== undefined) {
    if (options.scope !== undefined) {
      throw new CliError(
        '--scope goes with --secret-env or --key; the token command decides its token',
        EXIT.usage,
      );
    }
    return tokenCommand(options.tokenCommand);
  }
  const agent = options.agent;
  if (agent === undefined || agent === '') throw new CliError('--agent NAME is required', EXIT.usage);
  try {
    new URL(options.issuer);
  } catch {
    throw new CliError(`--issuer ${options.issuer} is not a URL`, EXIT.usage);
  }
  const common = { issuer: options.issuer, scope: options.scope };
  if (options.secretEnv !== undefined) {
    const secret = process.env[options.secretEnv];
    if (secret === undefined || secret === '') {
      throw new CliError(`the variable ${options.secretEnv} (--secret-env) is unset or empty`, EXIT.usage);
    }
    const method = options.secretMethod === 'post' ? 'client_secret_post' : 'client_secret_basic';
    return clientCredentials({ ...common, auth: { method, clientId: agent, secret } });
  }
  const signer = await loadAssertionSigner(options.key ?? '', agent, options.kid);
  return clientCredentials({
    ...common,
    auth: { method: 'private_key_jwt', clientId: agent, assertion: (audience) => signer.sign(audience) },
  });
}

/**
 * The interception CA for the agent's command: the --ca file when given (it wins), else the
 * bundle the issuer publishes (GET /ca.pem, named in its discovery document). Over plain HTTP to
 * another machine the bundle is only as trustworthy as the network: say so, in one line.
 */
export async function interceptionCa(options: { ca?: string; issuer: string }): Promise<CaSource> {
  if (options.ca !== undefined) return readCa(options.ca);
  if (!URL.canParse(options.issuer)) {
    throw new CliError(`--issuer ${options.issuer} is not a URL`, EXIT.usage);
  }
  const fetched = await fetchInterceptionCa(options.issuer).catch((err: unknown) => {
    if (!(err instanceof AgentRunError)) throw err;
    throw new ContextError(err, 'cannot fetch the interception CA', '; give --issuer URL, or --ca FILE');
  });
  if (plainHttpOffLoopback(fetched.url)) {
    process.stderr.write(
      `reins: warning: the interception CA came from ${fetched.url} over plain HTTP: anyone on the path ` +
        'could have swapped in their own (as they could answer for the token endpoint); use an https:// issuer, or --ca FILE\n',
    );
  }
  return { pem: fetched.pem };
}

interface RunOptions extends TokenOptions {
  ca?: string;
}

export function runCommand(): Command {
  const command = new Command('run')
    .description(
      "run a command with its HTTP(S) traffic sent through the gateway under the agent's token (refreshed as it expires)",
    )
    .usage('--agent NAME (--secret-env VAR | --key FILE | --token-command CMD) [options] -- COMMAND [ARGS…]')
    .argument('<command...>', 'the command and its arguments (after --)')
    .passThroughOptions();
  addTokenOptions(command)
    .option(
      '--ca <file>',
      "the gateway interception CA (PEM) for the command to trust; default: the issuer's /ca.pem",
    )
    .addHelpText(
      'after',
      '\nThe command gets HTTP_PROXY, HTTPS_PROXY (and lower case) pointing at a local proxy on a\n' +
        'loopback port, NODE_USE_ENV_PROXY=1, and the interception CA (--ca FILE, else fetched from\n' +
        "the issuer's /ca.pem) through NODE_EXTRA_CA_CERTS, SSL_CERT_FILE, REQUESTS_CA_BUNDLE and\n" +
        'CURL_CA_BUNDLE (the last three: a bundle of the usual roots plus the CA). Signals are\n' +
        "passed on; reins run exits with the command's exit code (128+N if it died of signal N;\n" +
        '127/126 if it could not be started).\n' +
        "Exit codes 1, 2, 3 before the command starts are reins run's own (docs/cli.md).\n" +
        '\nExample:\n' +
        '  reins run --agent billing-agent --secret-env ACME_BILLING_AGENT_SECRET -- python3 agent.py\n' +
        '\nSee docs/agents.md.',
    );
  return command.action(async (argv: string[], options: RunOptions) => {
    const gateway = gatewayUrl(options.gateway);
    const obtain = await tokenObtainer(options);
    const [program, ...args] = argv;
    if (program === undefined) throw new CliError('name the command to run after --', EXIT.usage);
    const tokens = new TokenSource(obtain, { onEvent: reportRefresh });
    let proxy: Awaited<ReturnType<typeof startLocalProxy>> | undefined;
    let ca: Awaited<ReturnType<typeof temporaryCaFiles>> | undefined;
    try {
      await tokens.start();
      ca = await temporaryCaFiles(await interceptionCa(options), process.env);
      proxy = await startLocalProxy({ gateway, token: () => tokens.current() });
      const withhold = options.secretEnv === undefined ? [] : [options.secretEnv];
      const env = childEnvironment(process.env, proxyVariables(proxy.url, ca), withhold);
      const outcome = await runChild(program, args, { env });
      if (outcome.kind === 'not_started') {
        process.stderr.write(`reins: cannot run ${program}: ${outcome.reason}\n`);
      }
      process.exitCode = outcome.code;
    } finally {
      tokens.stop();
      await proxy?.close();
      await ca?.remove();
    }
  });
}

/** Only failures are reported: the command's own output is what the user is reading. */
function reportRefresh(event: TokenSourceEvent): void {
  if (event.type !== 'refresh_failed') return;
  const seconds = (event.retryInMs / 1000).toFixed(1);
  process.stderr.write(
    `reins run: could not refresh the token (${event.message}); retrying in ${seconds} s\n`,
  );
}
