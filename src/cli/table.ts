// Lists printed as aligned columns, the first row the heading: what `keys list`, `ca list`,
// `alerts list` and `baseline show` print for a reader, when --json was not asked for.

/**
 * Columns padded to their widest cell, two spaces apart, no trailing blanks. Cells may come from
 * requests (hosts, user ids): each is made printable first.
 */
export function formatTable(cells: readonly (readonly string[])[]): string {
  const rows = cells.map((row) => row.map(printable));
  const widths = rows[0]?.map((_, i) => Math.max(...rows.map((r) => r[i]?.length ?? 0))) ?? [];
  return rows
    .map((r) =>
      r
        .map((cell, i) => cell.padEnd(widths[i] ?? 0))
        .join('  ')
        .trimEnd(),
    )
    .join('\n');
}

/** Text as one printable line: control characters would rewrite the operator's terminal. */
export function printable(text: string): string {
  // biome-ignore lint/suspicious/noControlCharactersInRegex: these are the characters replaced.
  return text.replace(/[\u0000-\u001f\u007f-\u009f]/g, ' ');
}
