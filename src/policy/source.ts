// A policy file as read from disk: reading is I/O (load.ts); everything after works on these
// values, so validation and planning are pure and testable without a file system.

export interface PolicySource {
  /** The path as shown in diagnostics (e.g. `policies/acme.yaml`), so editors can open it. */
  readonly file: string;
  /**
   * The path relative to the policy directory, with `/` separators. The content hash uses this,
   * so the same files hash the same wherever the directory lives.
   */
  readonly name: string;
  readonly text: string;
}
