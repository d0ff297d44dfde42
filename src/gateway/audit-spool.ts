// Where audit rows wait while the database cannot take them: an append-only file of one JSON
// record per line, in the order the rows were recorded, bounded in size. The audit writer
// (audit.ts) moves its queue here when a write fails, so the gateway keeps answering through a
// database outage instead of stalling once the in-memory queue is full, and replays the file, in
// order and before any newer row, once the database is back.
//
// Durability: rows are appended in groups (everything queued when the writer moves it), each
// group fsync'd before the writer lets go of it. The replay position is kept in a second file,
// written after every replayed batch commits; a crash between a commit and that write replays the
// batch again at the next start (rows are at least once after a crash, never lost). A spool left
// by a process that died is replayed by the next process that takes its directory.
//
// One process per spool directory (the same lock file as the embedded database's directory): a
// second gateway process on the same data directory takes the next free one (`audit-spool-2`, …).
import { constants } from 'node:fs';
import { mkdir, open, readFile, rename, truncate } from 'node:fs/promises';
import { join } from 'node:path';
import { lockDataDir } from '../store/data-dir-lock.ts';
import { StoreError } from '../store/db.ts';

const ROWS_FILE = 'rows.jsonl';
const HEAD_FILE = 'head';
/** How much is read from the file per replay batch at most. */
const READ_CHUNK = 1 << 20;
/** Spool directories tried per data directory before giving up (that many live processes). */
const MAX_DIRECTORIES = 16;

export interface AuditSpoolOptions {
  /** Bytes the file may hold; once full, the writer's in-memory queue and back-pressure take over. */
  readonly maxBytes?: number;
}

export const DEFAULT_SPOOL_BYTES = 1 << 30;

export class AuditSpool {
  /** Bytes in the file (written and not truncated). */
  #size: number;
  /** Where the first row not yet replayed starts. */
  #head: number;
  /** Rows between head and the end of the file. */
  #rows: number;
  #closed = false;
  /** The operation running now: appends, reads and moves of the head run one after another. */
  #last: Promise<unknown> = Promise.resolve();

  private constructor(
    readonly dir: string,
    private readonly release: () => Promise<void>,
    private readonly maxBytes: number,
    size: number,
    head: number,
    rows: number,
  ) {
    this.#size = size;
    this.#head = head;
    this.#rows = rows;
  }

  /**
   * Opens the first spool directory under `parent` no running process holds, with what a process
   * before left in it (replayed first).
   */
  static async open(parent: string, options: AuditSpoolOptions = {}): Promise<AuditSpool> {
    const maxBytes = options.maxBytes ?? DEFAULT_SPOOL_BYTES;
    for (let n = 1; n <= MAX_DIRECTORIES; n++) {
      const dir = join(parent, n === 1 ? 'audit-spool' : `audit-spool-${n}`);
      // Audit rows name agents, users and destinations: the spool is the process user's alone.
      await mkdir(dir, { recursive: true, mode: 0o700 });
      let release: () => Promise<void>;
      try {
        release = await lockDataDir(dir);
      } catch (err) {
        if (err instanceof StoreError) continue;
        throw err;
      }
      try {
        const size = await completeLength(join(dir, ROWS_FILE));
        const headText = await readFile(join(dir, HEAD_FILE), 'utf8').catch(() => '0');
        const head = Math.min(size, Math.max(0, Number.parseInt(headText, 10) || 0));
        const rows = await countLines(join(dir, ROWS_FILE), head, size);
        return new AuditSpool(dir, release, maxBytes, size, head, rows);
      } catch (err) {
        await release();
        throw err;
      }
    }
    throw new StoreError(
      'database_unavailable',
      `every audit spool directory under ${parent} is held by a running process (${MAX_DIRECTORIES}); set REINS_DATA_DIR apart per process`,
    );
  }

  /** Rows waiting to be replayed. */
  get rows(): number {
    return this.#rows;
  }

  /** Bytes waiting to be replayed (what the spool holds now). */
  get bytes(): number {
    return this.#size - this.#head;
  }

  /** Whether `records` (JSON texts of one row each) fit in the room left. */
  fits(records: readonly string[]): boolean {
    let bytes = 0;
    for (const record of records) bytes += Buffer.byteLength(record) + 1;
    return this.#size + bytes <= this.maxBytes;
  }

  /** Runs `operation` after every one before it (an append racing a truncation would lose rows). */
  #serial<T>(operation: () => Promise<T>): Promise<T> {
    const run = this.#last.then(operation, operation);
    this.#last = run.catch(() => undefined);
    return run;
  }

  /** Appends `records` in order, one line each, and fsyncs before resolving. */
  append(records: readonly string[]): Promise<void> {
    return this.#serial(() => this.#append(records));
  }

  /** Up to `max` rows from the head, in order, as JSON texts; their bytes for advance(). */
  peek(max: number): Promise<{ records: string[]; bytes: number }> {
    return this.#serial(() => this.#peek(max));
  }

  /**
   * The first `rows` rows (`bytes` long) are in the database now: moves the head past them, and
   * empties the file once nothing is left in it.
   */
  advance(rows: number, bytes: number): Promise<void> {
    return this.#serial(() => this.#advance(rows, bytes));
  }

  async #append(records: readonly string[]): Promise<void> {
    if (this.#closed) throw new Error(`the audit spool ${this.dir} is closed`);
    if (records.length === 0) return;
    const data = Buffer.from(`${records.join('\n')}\n`);
    const file = join(this.dir, ROWS_FILE);
    // Written at the end this spool knows of, not with O_APPEND: a write that failed part-way
    // (ENOSPC, EIO) is cut off again below, so that the next append starts on a line boundary
    // and replay never reads half a row glued to another.
    const handle = await open(file, constants.O_WRONLY | constants.O_CREAT | constants.O_NOFOLLOW, 0o600);
    try {
      await handle.write(data, 0, data.length, this.#size);
      await handle.sync();
    } catch (err) {
      await handle.truncate(this.#size).catch(() => undefined);
      throw err;
    } finally {
      await handle.close();
    }
    this.#size += data.length;
    this.#rows += records.length;
  }

  async #peek(max: number): Promise<{ records: string[]; bytes: number }> {
    const records: string[] = [];
    let bytes = 0;
    if (this.#rows === 0) return { records, bytes };
    const handle = await open(join(this.dir, ROWS_FILE), constants.O_RDONLY | constants.O_NOFOLLOW);
    try {
      // Lines are found as bytes and decoded whole: a character split between two reads would
      // otherwise decode as replacement characters, and the byte count would move the head wrong.
      let position = this.#head;
      let carry = Buffer.alloc(0);
      while (records.length < max && position < this.#size) {
        const length = Math.min(READ_CHUNK, this.#size - position);
        const chunk = Buffer.alloc(length);
        const { bytesRead } = await handle.read(chunk, 0, length, position);
        if (bytesRead === 0) break;
        position += bytesRead;
        const buffer =
          carry.length === 0
            ? chunk.subarray(0, bytesRead)
            : Buffer.concat([carry, chunk.subarray(0, bytesRead)]);
        let start = 0;
        for (
          let end = buffer.indexOf(0x0a, start);
          end !== -1 && records.length < max;
          end = buffer.indexOf(0x0a, start)
        ) {
          records.push(buffer.toString('utf8', start, end));
          bytes += end - start + 1;
          start = end + 1;
        }
        carry = buffer.subarray(start);
      }
    } finally {
      await handle.close();
    }
    return { records, bytes };
  }

  async #advance(rows: number, bytes: number): Promise<void> {
    this.#head += bytes;
    this.#rows -= rows;
    if (this.#rows <= 0) {
      // Everything replayed: the file is emptied first, then the head reset. A crash in between
      // leaves a head past the end of an empty file, which open() clamps to 0: nothing replayed
      // twice, nothing lost.
      this.#rows = 0;
      await truncate(join(this.dir, ROWS_FILE), 0);
      await writeAtomically(join(this.dir, HEAD_FILE), '0');
      this.#size = 0;
      this.#head = 0;
      return;
    }
    await writeAtomically(join(this.dir, HEAD_FILE), String(this.#head));
  }

  close(): Promise<void> {
    return this.#serial(async () => {
      if (this.#closed) return;
      this.#closed = true;
      await this.release();
    });
  }
}

async function writeAtomically(file: string, text: string): Promise<void> {
  const temporary = `${file}.tmp`;
  // O_NOFOLLOW: a link planted in the directory is refused, never written through.
  const handle = await open(
    temporary,
    constants.O_WRONLY | constants.O_CREAT | constants.O_TRUNC | constants.O_NOFOLLOW,
    0o600,
  );
  try {
    await handle.writeFile(text);
    await handle.sync();
  } finally {
    await handle.close();
  }
  await rename(temporary, file);
}

/** Complete lines between `from` and `to` (a line torn by a crash mid-append is not counted). */
async function countLines(file: string, from: number, to: number): Promise<number> {
  if (to <= from) return 0;
  const handle = await open(file, 'r');
  let count = 0;
  try {
    const buffer = Buffer.alloc(READ_CHUNK);
    for (let position = from; position < to; ) {
      const { bytesRead } = await handle.read(buffer, 0, Math.min(READ_CHUNK, to - position), position);
      if (bytesRead === 0) break;
      for (let i = 0; i < bytesRead; i++) if (buffer[i] === 0x0a) count++;
      position += bytesRead;
    }
  } finally {
    await handle.close();
  }
  return count;
}

/**
 * The file's length up to its last complete line, the torn end of an append a crash interrupted
 * cut off (else the next append would glue a row onto half of another).
 */
async function completeLength(file: string): Promise<number> {
  let handle: Awaited<ReturnType<typeof open>>;
  try {
    handle = await open(file, 'r');
  } catch {
    return 0;
  }
  let complete = 0;
  try {
    const { size } = await handle.stat();
    const buffer = Buffer.alloc(READ_CHUNK);
    for (let end = size; end > 0 && complete === 0; ) {
      const start = Math.max(0, end - READ_CHUNK);
      const { bytesRead } = await handle.read(buffer, 0, end - start, start);
      const last = buffer.subarray(0, bytesRead).lastIndexOf(0x0a);
      if (last !== -1) complete = start + last + 1;
      end = start;
    }
    if (complete === size) return size;
  } finally {
    await handle.close();
  }
  await truncate(file, complete);
  return complete;
}
