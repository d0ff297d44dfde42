// Paths into a policy file and their human names, shared by the schema messages and the
// semantic checks so both speak of "agent 'billing-agent' auth.method" the same way.
import type { NodePath } from './document.ts';

/** A human name for the place at `path`: "agent 'billing-agent' auth.method", "users[1].match". */
export function describe(path: NodePath): string {
  if (path.length === 0) return 'the file';
  const [head, name, ...rest] = path;
  const kinds: Record<string, string> = { agents: 'agent', apps: 'app', integrations: 'integration' };
  const kind = kinds[String(head)];
  if (kind !== undefined && name !== undefined) {
    const tail = dotted(rest);
    const separator = tail === '' || tail.startsWith('[') ? '' : ' ';
    return `${kind} '${String(name)}'${separator}${tail}`;
  }
  return dotted(path);
}

function dotted(path: NodePath): string {
  return path
    .map((segment, i) => (typeof segment === 'number' ? `[${segment}]` : i === 0 ? segment : `.${segment}`))
    .join('');
}

/** JSON Pointer → path segments; array indexes become numbers by looking at the data. */
export function pointerToPath(pointer: string, data: unknown): (string | number)[] {
  if (pointer === '') return [];
  const path: (string | number)[] = [];
  let current: unknown = data;
  for (const raw of pointer.slice(1).split('/')) {
    const segment = raw.replaceAll('~1', '/').replaceAll('~0', '~');
    if (Array.isArray(current)) {
      const index = Number(segment);
      path.push(index);
      current = current[index];
    } else {
      path.push(segment);
      current =
        typeof current === 'object' && current !== null
          ? (current as Record<string, unknown>)[segment]
          : undefined;
    }
  }
  return path;
}

export function valueAt(data: unknown, path: NodePath): unknown {
  let current = data;
  for (const segment of path) {
    if (typeof current !== 'object' || current === null) return undefined;
    current = (current as Record<string | number, unknown>)[segment];
  }
  return current;
}
