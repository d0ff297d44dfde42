// How policy loading failures become CLI exit codes (used by `policy …` and `serve`): a missing
// or unreadable directory is "unavailable" (3); a directory without policy files is a wrong
// input (1), since applying nothing would remove every tenant.
import { PolicyLoadError } from '../policy/index.ts';
import { CliError, EXIT } from './failure.ts';

/** A PolicyLoadError as a CliError with its exit code; anything else unchanged. */
export function policyErrorToCli(err: unknown): unknown {
  if (!(err instanceof PolicyLoadError)) return err;
  return new CliError(err.message, err.code === 'policy_dir_empty' ? EXIT.invalid : EXIT.unavailable);
}
