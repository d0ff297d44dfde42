// Why a start failed, as a value the CLI maps to an exit code (serve.ts).
import type { Diagnostic } from '../policy/index.ts';

export type StartErrorCode = 'policy_invalid' | 'port_in_use';

export class StartError extends Error {
  constructor(
    readonly code: StartErrorCode,
    message: string,
    readonly diagnostics: readonly Diagnostic[] = [],
  ) {
    super(message);
    this.name = 'StartError';
  }
}
