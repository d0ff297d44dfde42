// What validation reports: one diagnostic per mistake (error) or surprise (warning), each at a
// file position an editor can jump to. Validation returns these as values; it never throws on
// bad input, so one run can report every mistake at once.

export type Severity = 'error' | 'warning';

/** A place in a policy file. Line and column are 1-based, like every editor and compiler. */
export interface Position {
  readonly file: string;
  readonly line: number;
  readonly column: number;
}

export interface Diagnostic extends Position {
  readonly severity: Severity;
  /** What is wrong and what to write instead. */
  readonly message: string;
}

export function error(at: Position, message: string): Diagnostic {
  return { severity: 'error', file: at.file, line: at.line, column: at.column, message };
}

export function warning(at: Position, message: string): Diagnostic {
  return { severity: 'warning', file: at.file, line: at.line, column: at.column, message };
}

/** `file:line:column: error: message`, the form compilers use and editors link. */
export function formatDiagnostic(d: Diagnostic): string {
  return `${d.file}:${d.line}:${d.column}: ${d.severity}: ${d.message}`;
}

export function formatPosition(at: Position): string {
  return `${at.file}:${at.line}:${at.column}`;
}

/** By file, then line, then column; errors before warnings at the same place; duplicates dropped. */
export function sortDiagnostics(diagnostics: readonly Diagnostic[]): Diagnostic[] {
  const seen = new Set<string>();
  const unique = diagnostics.filter((d) => {
    const key = `${formatDiagnostic(d)}`;
    if (seen.has(key)) return false;
    seen.add(key);
    return true;
  });
  return unique.sort(
    (a, b) =>
      compareText(a.file, b.file) ||
      a.line - b.line ||
      a.column - b.column ||
      (a.severity === b.severity ? 0 : a.severity === 'error' ? -1 : 1) ||
      compareText(a.message, b.message),
  );
}

export function hasErrors(diagnostics: readonly Diagnostic[]): boolean {
  return diagnostics.some((d) => d.severity === 'error');
}

/** Code-unit order, independent of the locale, so output is the same on every machine. */
export function compareText(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
