// The Node.js version check `reins` runs before anything else (bin/reins.js).
//
// Why here, in plain JavaScript: dist/ is compiled for Node 22.12+ and uses its APIs
// (keyObject.toCryptoKey, require(esm), …). On an older Node it gets as far as migrating the
// database and creating keys before failing with an error nobody can act on. This file must
// therefore parse and run on old Node versions: no optional chaining, no `??`, no
// top-level await, no imports.
// Keep MINIMUM in step with "engines" in package.json (a test checks it).

export const MINIMUM = '22.12.0';

/** [major, minor, patch] of "v22.12.0" / "22.12.0"; null when it is not a version. */
function parse(version) {
  const match = /^v?(\d+)\.(\d+)\.(\d+)/.exec(String(version));
  return match ? [Number(match[1]), Number(match[2]), Number(match[3])] : null;
}

/** Whether `running` (e.g. process.versions.node) is at least `minimum`. */
export function isSupported(running, minimum) {
  const have = parse(running);
  const need = parse(minimum === undefined ? MINIMUM : minimum);
  if (have === null || need === null) return false;
  for (let i = 0; i < 3; i++) {
    if (have[i] !== need[i]) return have[i] > need[i];
  }
  return true;
}

/**
 * The one line to print when `running` is too old (without the "reins: " prefix), or null when
 * it is recent enough.
 */
export function nodeVersionProblem(running) {
  if (isSupported(running)) return null;
  return (
    `needs Node.js ${MINIMUM} or newer, but this is Node.js ${String(running)}; install Node.js 22 ` +
    '(22.12 or later) or 24 LTS from https://nodejs.org/ or with your version manager (e.g. nvm install 24)'
  );
}
