#!/usr/bin/env node
// The `reins` command. The TypeScript sources are compiled to dist/ by `npm run build`
// (run automatically by `npm ci` through the `prepare` script).
//
// The Node.js version is checked first, and dist/ is imported only once it passed: dist/ needs
// Node 22.12+, and on an older Node it would fail half-way through a command (docs/cli.md).
// This file and node-version.js stay plain enough for old Node versions to parse (no top-level
// await, no `??` or `?.`).
import { nodeVersionProblem } from './node-version.js';

/** docs/cli.md: 3, something needed is unavailable (here: a recent enough Node.js). */
const EXIT_UNAVAILABLE = 3;

const problem = nodeVersionProblem(process.versions.node);
if (problem !== null) {
  process.stderr.write(`reins: ${problem}\n`);
  process.exitCode = EXIT_UNAVAILABLE;
} else {
  import('../dist/cli/main.js').then(
    (cli) =>
      cli.main(process.argv).then((code) => {
        process.exitCode = code;
      }),
    (err) => {
      // A checkout where `npm run build` has not run (or failed): say so, not a stack trace.
      const reason = (err instanceof Error ? err.message : String(err)).split('\n')[0];
      process.stderr.write(
        `reins: cannot load the compiled command line (dist/cli/main.js): ${reason}; run npm run build\n`,
      );
      process.exitCode = EXIT_UNAVAILABLE;
    },
  );
}
