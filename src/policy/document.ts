// YAML text → a document whose every node keeps its source position. `uniqueKeys` turns a
// duplicated key into an error instead of silently keeping the last value, which would let a
// second `egress:` quietly replace the first.
import {
  type Document,
  isAlias,
  isMap,
  isPair,
  isScalar,
  isSeq,
  LineCounter,
  type Node,
  type Pair,
  parseDocument,
  type Scalar,
  visit,
  type YAMLError,
} from 'yaml';
import { type Diagnostic, error, type Position, warning } from './diagnostic.ts';
import type { PolicySource } from './source.ts';

/** A path into the document: map keys and sequence indexes, as in JSON Pointer. */
export type NodePath = readonly (string | number)[];

export interface ParsedFile {
  readonly source: PolicySource;
  /**
   * The document as plain data; undefined when the YAML itself is broken. With duplicate keys
   * (errors in the diagnostics) it is still read, the later entry of each winning.
   */
  readonly value: unknown;
  /** Position of the value at `path` (or of the nearest ancestor that exists). */
  locate(path: NodePath): Position;
  /** Position of the key of the entry at `path` (e.g. `egres:` in an agent); falls back to locate. */
  locateKey(path: NodePath): Position;
  /** Position of a column (1-based) inside the string value at `path`, accounting for quotes. */
  locateInString(path: NodePath, column: number): Position;
}

export interface ParseOutcome {
  readonly file: ParsedFile;
  readonly diagnostics: Diagnostic[];
}

const MAX_ALIASES = 100; // a "billion laughs" file expands aliases exponentially: refuse it

export function parsePolicyFile(source: PolicySource): ParseOutcome {
  const lineCounter = new LineCounter();
  const doc = parseDocument(source.text, { lineCounter, uniqueKeys: true, prettyErrors: false });
  const at = (offset: number): Position => {
    const { line, col } = lineCounter.linePos(offset);
    return { file: source.file, line, column: col };
  };
  const diagnostics: Diagnostic[] = [
    ...doc.errors.map((e) => error(at(e.pos[0]), yamlMessage(doc, e))),
    ...doc.warnings.map((e) => warning(at(e.pos[0]), yamlMessage(doc, e))),
  ];

  // A duplicate key leaves the document whole (the later entry wins in `value`): the file is
  // still read, so that its other mistakes are reported in the same run; validate.ts keeps it
  // out of the compiled policy. Any other YAML error leaves nothing reliable to read.
  let value: unknown;
  if (doc.errors.every((e) => e.code === 'DUPLICATE_KEY')) {
    try {
      value = doc.toJS({ maxAliasCount: MAX_ALIASES });
    } catch (err) {
      diagnostics.push(error(at(firstAliasOffset(doc)), aliasMessage(err)));
    }
  }

  const locateNode = (path: NodePath): { node: Node | null; key: Node | null } => {
    let node: unknown = doc.contents;
    let key: Node | null = null;
    for (const segment of path) {
      const pair = isMap(node) ? findPair(node.items, segment) : null;
      if (pair) {
        key = isNodeLike(pair.key) ? pair.key : key;
        node = pair.value;
        continue;
      }
      if (isSeq(node) && typeof segment === 'number' && node.items[segment] !== undefined) {
        node = node.items[segment];
        key = isNodeLike(node) ? node : key;
        continue;
      }
      break; // the rest of the path does not exist: report at the deepest node that does
    }
    return { node: isNodeLike(node) ? node : null, key };
  };

  const start = (node: Node | null, fallback: Node | null): Position => {
    const range = node?.range ?? fallback?.range;
    return at(range ? range[0] : 0);
  };

  const file: ParsedFile = {
    source,
    value,
    locate: (path) => {
      const { node, key } = locateNode(path);
      return start(node, key);
    },
    locateKey: (path) => {
      const { node, key } = locateNode(path);
      return start(key, node);
    },
    locateInString: (path, column) => {
      const { node, key } = locateNode(path);
      if (!isScalar(node) || !node.range) return start(node, key);
      const offset = stringOffset(source.text, node, column);
      return at(offset);
    },
  };
  return { file, diagnostics };
}

function isNodeLike(value: unknown): value is Node {
  return isScalar(value) || isMap(value) || isSeq(value) || isAlias(value);
}

function findPair(items: readonly Pair<unknown, unknown>[], segment: string | number): Pair | null {
  for (const pair of items) {
    if (!isPair(pair)) continue;
    const key = isScalar(pair.key) ? pair.key.value : pair.key;
    if (String(key) === String(segment)) return pair as Pair;
  }
  return null;
}

/**
 * Offset in the file of `column` (1-based) inside a scalar. Exact for single-line plain and
 * quoted scalars without escapes (every rule anyone writes); otherwise the scalar's start, which
 * is still the right line.
 */
function stringOffset(text: string, node: Scalar, column: number): number {
  const [begin, end] = node.range as [number, number, number];
  const raw = text.slice(begin, end);
  const value = String(node.value);
  const quoted = node.type === 'QUOTE_DOUBLE' || node.type === 'QUOTE_SINGLE';
  const inner = quoted ? raw.slice(1, -1) : raw;
  if (inner !== value) return begin;
  return begin + (quoted ? 1 : 0) + Math.max(0, column - 1);
}

function yamlMessage(doc: Document, e: YAMLError): string {
  switch (e.code) {
    case 'DUPLICATE_KEY': {
      const key = keyAt(doc, e.pos[0]);
      const name = key === null ? 'this key' : `'${key}'`;
      return `duplicate key ${name}: a key may appear once in a map; merge the two entries or remove one`;
    }
    case 'MULTIPLE_DOCS':
      return 'a policy file holds one YAML document; move the part after `---` into its own file';
    case 'TAB_AS_INDENT':
      return 'YAML does not allow tabs for indentation; indent with spaces';
    case 'TAG_RESOLVE_FAILED':
      return `${e.message}; policy files need no YAML tags, remove it`;
    default:
      return `YAML syntax: ${e.message.replace(/\s+/g, ' ').trim()}`;
  }
}

function keyAt(doc: Document, offset: number): string | null {
  let found: string | null = null;
  visit(doc, {
    Pair(_, pair) {
      if (isScalar(pair.key) && pair.key.range?.[0] === offset) {
        found = String(pair.key.value);
        return visit.BREAK;
      }
      return undefined;
    },
  });
  return found;
}

function firstAliasOffset(doc: Document): number {
  let offset = 0;
  visit(doc, {
    Alias(_, alias) {
      if (alias.resolve(doc) === undefined && alias.range) {
        offset = alias.range[0];
        return visit.BREAK;
      }
      return undefined;
    },
  });
  return offset;
}

function aliasMessage(err: unknown): string {
  const message = err instanceof Error ? err.message : String(err);
  if (/excessive alias count/i.test(message)) {
    return `too many YAML aliases (more than ${MAX_ALIASES}); write the values out instead`;
  }
  return `YAML alias: ${message}; define the anchor (&name) before using it (*name)`;
}
