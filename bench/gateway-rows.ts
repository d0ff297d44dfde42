// The rows of bench/gateway's tables and how they are measured: every row at every connection
// count, warmed up first, in rounds (interleaved, so that the machine's other work is shared out
// between the rows), the median round reported, with the CPU time the row's proxy process spent
// per request.
import { cpuSeconds } from './gateway-children.ts';
import { type Cell, Load, type LoadTarget } from './gateway-load.ts';
import { formatRate } from './harness.ts';

export type Measured = Cell & { readonly cpuMicros: number };

export interface Row {
  readonly name: string;
  /** The process whose CPU time is charged to the row: the proxy (the upstream for direct). */
  readonly pid: number | undefined;
  readonly target: LoadTarget;
  /** A reins row whose every request must leave an audit row. */
  readonly audited: boolean;
  /** Requests sent, warm-ups included. */
  sent: number;
  /** Per connection count: every round's cell, and the median one. */
  readonly samples: Map<number, Measured[]>;
  readonly cells: Map<number, Measured>;
}

export function row(name: string, pid: number | undefined, target: LoadTarget, audited = false): Row {
  return { name, pid, target, audited, sent: 0, samples: new Map(), cells: new Map() };
}

export interface Schedule {
  readonly concurrency: readonly number[];
  readonly seconds: number;
  readonly warmSeconds: number;
  readonly rounds: number;
  /** Measures only the rows whose name holds one of these texts (`|` between them). */
  readonly only?: string | undefined;
}

/** Measures every row at every connection count in `schedule.rounds` rounds; fills `cells`. */
export async function measureRows(rows: readonly Row[], schedule: Schedule): Promise<void> {
  for (let round = 0; round < schedule.rounds; round++) {
    for (const connections of schedule.concurrency) {
      for (const r of rows) {
        if (!chosen(r, schedule)) continue;
        const load = new Load(r.target, connections);
        try {
          await load.run(schedule.warmSeconds);
          const cpuBefore = cpuSeconds(r.pid);
          const cell = await load.run(schedule.seconds);
          const cpuMicros = ((cpuSeconds(r.pid) - cpuBefore) * 1e6) / cell.requests;
          const samples = r.samples.get(connections) ?? [];
          samples.push({ ...cell, cpuMicros });
          r.samples.set(connections, samples);
        } finally {
          r.sent += load.sent;
          await load.close();
        }
      }
    }
  }
  for (const r of rows) {
    for (const [connections, samples] of r.samples) {
      const sorted = [...samples].sort((a, b) => a.requestsPerSecond - b.requestsPerSecond);
      const median = sorted[Math.floor(sorted.length / 2)];
      if (median) r.cells.set(connections, median);
    }
  }
}

export function chosen(r: Pick<Row, 'name'>, schedule: Pick<Schedule, 'only'>): boolean {
  return !schedule.only || schedule.only.split('|').some((text) => r.name.includes(text));
}

/** `r`'s requests/s over `base`'s at one connection count; undefined when either is missing. */
export function share(r: Row, base: Row | undefined, connections: number): number | undefined {
  const a = r.cells.get(connections)?.requestsPerSecond;
  const b = base?.cells.get(connections)?.requestsPerSecond;
  return a !== undefined && b !== undefined ? a / b : undefined;
}

export function ratio(r: Row, base: Row | undefined, connections: number): string {
  const value = share(r, base, connections);
  return value === undefined ? '–' : `${value.toFixed(2)}×`;
}

function cpuText(cell: Measured): string {
  return Number.isNaN(cell.cpuMicros) ? '–' : `${cell.cpuMicros.toFixed(0)} µs`;
}

/**
 * A table's lines, by connection count then row: name, connections, requests/s, the row's
 * ratios (`ratios`), p50, p99 and the proxy's CPU per request. Rows not measured are left out.
 */
export function tableLines(
  rows: readonly Row[],
  concurrency: readonly number[],
  ratios: (r: Row, connections: number) => string[],
): string[][] {
  const lines: string[][] = [];
  for (const connections of concurrency) {
    for (const r of rows) {
      const cell = r.cells.get(connections);
      if (!cell) continue;
      lines.push([
        r.name,
        String(connections),
        formatRate(cell.requestsPerSecond),
        ...ratios(r, connections),
        `${cell.p50.toFixed(2)} ms`,
        `${cell.p99.toFixed(2)} ms`,
        cpuText(cell),
      ]);
    }
  }
  return lines;
}

export const verdict = (value: number | undefined, text: string, ok: boolean): string =>
  value === undefined ? 'not measured' : `${text} ${ok ? 'met' : 'MISSED'}`;
