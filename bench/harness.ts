// A small benchmark harness: runs each case for a time budget and reports operations per
// second. Claims are ratios against a baseline measured in the same run (docs/performance.md),
// never absolute timings in tests. BENCH_SMOKE=1 shortens every budget so CI keeps each
// benchmark runnable without spending minutes on it.

export const smoke = process.env.BENCH_SMOKE === '1';

export interface Measurement {
  readonly name: string;
  readonly opsPerSecond: number;
  readonly nsPerOp: number;
}

/** Runs `fn` repeatedly for about `ms` milliseconds (after a warm-up) and measures its rate. */
export function measure(name: string, fn: () => unknown, ms = 400): Measurement {
  const budget = smoke ? Math.min(ms, 20) : ms;
  const warmUntil = performance.now() + budget / 4;
  while (performance.now() < warmUntil) fn();
  let ops = 0;
  let batch = 1;
  const start = performance.now();
  let elapsed = 0;
  while (elapsed < budget) {
    for (let i = 0; i < batch; i++) fn();
    ops += batch;
    batch = Math.min(batch * 2, 1 << 16);
    elapsed = performance.now() - start;
  }
  const seconds = elapsed / 1000;
  return { name, opsPerSecond: ops / seconds, nsPerOp: (seconds * 1e9) / ops };
}

export function formatRate(opsPerSecond: number): string {
  if (opsPerSecond >= 1e6) return `${(opsPerSecond / 1e6).toFixed(2)} M/s`;
  if (opsPerSecond >= 1e3) return `${(opsPerSecond / 1e3).toFixed(1)} k/s`;
  return `${opsPerSecond.toFixed(1)} /s`;
}

export function table(headers: readonly string[], rows: ReadonlyArray<readonly string[]>): string {
  const line = (cells: readonly string[]) => `| ${cells.join(' | ')} |`;
  return [line(headers), line(headers.map(() => '---')), ...rows.map(line)].join('\n');
}
