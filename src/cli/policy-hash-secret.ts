// `reins policy hash-secret`: the scrypt hash to put in a policy file as `secret_hash`. The
// secret is read from stdin, not from an argument: arguments end up in shell history and `ps`.
import { randomBytes } from 'node:crypto';
import { Command } from 'commander';
import { hashSecret } from '../policy/index.ts';
import { CliError, EXIT } from './failure.ts';

export function policyHashSecretCommand(): Command {
  return new Command('hash-secret')
    .description('print the secret_hash for a client secret read from stdin')
    .option('--generate', 'make a new random secret (256 bits) and print it with its hash')
    .addHelpText(
      'after',
      '\nExamples:\n' +
        '  printf %s "$BILLING_AGENT_SECRET" | reins policy hash-secret\n' +
        '  reins policy hash-secret --generate\n\n' +
        'The hash is $scrypt$ln=15,r=8,p=1$<salt>$<hash> (PHC string format, base64); put it in\n' +
        'the client\'s auth as secret_hash: "…" (quoted). One trailing newline of the input is ignored.',
    )
    .action(async (options: { generate?: boolean }) => {
      if (options.generate) {
        const secret = randomBytes(32).toString('base64url');
        process.stdout.write(`secret: ${secret}\nsecret_hash: "${hashSecret(secret)}"\n`);
        return;
      }
      if (process.stdin.isTTY) process.stderr.write('type the secret, then Ctrl-D:\n');
      const secret = (await readStdin()).replace(/\r?\n$/, '');
      if (secret === '') throw new CliError('no secret on stdin; pipe it in, or use --generate', EXIT.usage);
      process.stdout.write(`${hashSecret(secret)}\n`);
    });
}

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(Buffer.from(chunk as Buffer));
  return Buffer.concat(chunks).toString('utf8');
}
