// Paths as segment lists. A rule's path is a prefix that matches on segment boundaries:
// `/v1` matches `/v1`, `/v1/` and `/v1/charges`, never `/v10`.
//
// Both sides are brought to one canonical spelling before they meet: percent-encodings of
// unreserved characters decoded (`%7E` → `~`), other percent-encodings in upper case, and any
// character outside RFC 3986 `pchar` percent-encoded as UTF-8. Encoded `/`, `\` and NUL are
// refused outright: upstream servers disagree on whether `%2F` separates segments, and a
// prefix check is only sound when the gateway and the upstream see the same segments.

export type PathProblem =
  | 'encoded_separator'
  | 'backslash'
  | 'bad_percent_encoding'
  | 'bad_character'
  | 'dot_segment'
  | 'escapes_root';

export type SegmentsResult =
  | { ok: true; segments: string[] }
  | { ok: false; problem: PathProblem; offset: number; message: string };

const UNRESERVED = /[A-Za-z0-9\-._~]/;
const PCHAR_LITERAL = /[A-Za-z0-9\-._~!$&'()*+,;=:@]/;
const FORBIDDEN_ENCODED = new Set(['2F', '5C', '00']);

/** Canonical spelling of one segment, or a problem at `offset` within the segment. */
function normaliseSegment(
  segment: string,
): { ok: true; value: string } | { ok: false; problem: PathProblem; offset: number; message: string } {
  if (!segment.isWellFormed()) {
    return { ok: false, problem: 'bad_character', offset: 0, message: 'the path is not well-formed Unicode' };
  }
  let out = '';
  for (let i = 0; i < segment.length; i++) {
    const ch = segment[i] as string;
    if (ch === '%') {
      const hex = segment.slice(i + 1, i + 3).toUpperCase();
      if (!/^[0-9A-F]{2}$/.test(hex)) {
        return {
          ok: false,
          problem: 'bad_percent_encoding',
          offset: i,
          message: `'%' must be followed by two hex digits`,
        };
      }
      if (FORBIDDEN_ENCODED.has(hex)) {
        return {
          ok: false,
          problem: 'encoded_separator',
          offset: i,
          message: `an encoded '${hex === '2F' ? '/' : hex === '5C' ? '\\' : 'NUL'}' (%${hex}) is ambiguous and refused`,
        };
      }
      const decoded = String.fromCharCode(Number.parseInt(hex, 16));
      out += UNRESERVED.test(decoded) ? decoded : `%${hex}`;
      i += 2;
    } else if (ch === '\\') {
      return {
        ok: false,
        problem: 'backslash',
        offset: i,
        message: `a '\\' in a path is ambiguous and refused`,
      };
    } else if (ch === '\u0000') {
      // A raw NUL would be forwarded as %00, the very encoding refused above (servers written
      // in C end the path there): refuse it raw too.
      return { ok: false, problem: 'bad_character', offset: i, message: 'a NUL in a path is refused' };
    } else if (PCHAR_LITERAL.test(ch)) {
      out += ch;
    } else {
      // Encode whole code points: a character beyond the BMP is two UTF-16 units, and
      // encodeURIComponent throws on either half alone (the segment is well-formed, checked above).
      const point = String.fromCodePoint(segment.codePointAt(i) as number);
      out += encodeURIComponent(point).toUpperCase();
      i += point.length - 1;
    }
  }
  return { ok: true, value: out };
}

/**
 * A rule's path (starting with `/`) as canonical segments. Dot segments and empty segments are
 * refused with the spelling to use instead, so what an operator reads is what is enforced.
 * A trailing `/` is dropped: `/v1/` and `/v1` are the same prefix.
 */
export function parseRulePath(path: string): SegmentsResult {
  const raw = path.split('/').slice(1);
  if (raw.at(-1) === '') raw.pop();
  const segments: string[] = [];
  let offset = 1;
  for (const segment of raw) {
    const normal = normaliseSegment(segment);
    if (!normal.ok) return { ...normal, offset: offset + normal.offset };
    if (dotWithParameters(normal.value)) {
      return {
        ok: false,
        problem: 'dot_segment',
        offset,
        message: `'${segment}' is a dot segment to servers that strip path parameters (Tomcat, Jetty); dot segments are not allowed in a rule's path`,
      };
    }
    if (normal.value === '' || normal.value === '.' || normal.value === '..') {
      return {
        ok: false,
        problem: 'dot_segment',
        offset,
        message: `empty and dot segments ('//', '.', '..') are not allowed in a rule's path; write the path as it resolves${suggestResolved(raw)}`,
      };
    }
    segments.push(normal.value);
    offset += segment.length + 1;
  }
  return { ok: true, segments };
}

/**
 * Is the segment a dot segment with path parameters (`..;x`, `.;`, `..%3B`)? Tomcat and Jetty
 * strip `;params` from each segment before resolving dot segments, so they read
 * `/v1/..;/admin` as `/admin` while a prefix check sees a segment named `..;` under /v1: path
 * confusion. Nothing legitimate is named so; an encoded `;` counts too, for servers that decode
 * before they strip.
 */
function dotWithParameters(segment: string): boolean {
  const name = segment.split(/;|%3B/, 1)[0];
  return name !== segment && (name === '.' || name === '..');
}

function suggestResolved(raw: readonly string[]): string {
  // Canonical spellings, so that an encoded dot (`%2e`) is resolved like a plain one.
  const canonical = raw.map((s) => {
    const normal = normaliseSegment(s);
    return normal.ok ? normal.value : s;
  });
  const resolved = removeDotSegments(canonical.filter((s) => s !== '' && s !== '.'));
  return resolved === null ? '' : `: /${resolved.join('/')}`;
}

function removeDotSegments(segments: readonly string[]): string[] | null {
  const out: string[] = [];
  for (const segment of segments) {
    if (segment === '..') {
      if (out.length === 0) return null;
      out.pop();
    } else if (segment !== '.') {
      out.push(segment);
    }
  }
  return out;
}

/**
 * A request's path (origin-form, without the query) as canonical segments, after RFC 3986
 * dot-segment removal. A `..` that would climb above the root is refused rather than clamped:
 * clamping is one server's reading, and a request that relies on it is probing.
 * Empty segments are kept (`/v1//x` is not `/v1/x` to a prefix check), but a `..` after an empty
 * segment is refused: servers that merge slashes would resolve it differently than we do.
 */
export function parseRequestPath(path: string): SegmentsResult {
  if (!path.startsWith('/')) {
    return { ok: false, problem: 'escapes_root', offset: 0, message: 'the path must start with /' };
  }
  const out: string[] = [];
  let sawEmpty = false;
  let offset = 1;
  const raw = path.split('/').slice(1);
  for (let i = 0; i < raw.length; i++) {
    const segment = raw[i] as string;
    const normal = normaliseSegment(segment);
    if (!normal.ok) return { ...normal, offset: offset + normal.offset };
    const last = i === raw.length - 1;
    // `..;x` is `..` to Tomcat and Jetty, a plain name to us: refused. (`.;x` is harmless in a
    // request: a server that drops it drops a segment beyond any rule's prefix, which cannot
    // hold one.)
    if (dotWithParameters(normal.value) && normal.value.startsWith('..')) {
      return {
        ok: false,
        problem: 'escapes_root',
        offset,
        message: `'${normal.value}' is read as '..' by servers that strip path parameters, and refused`,
      };
    }
    if (normal.value === '..') {
      if (out.length === 0 || sawEmpty) {
        return {
          ok: false,
          problem: 'escapes_root',
          offset,
          message: sawEmpty ? `'..' after an empty segment is ambiguous` : `'..' escapes the root`,
        };
      }
      out.pop();
      if (last) out.push('');
    } else if (normal.value === '.') {
      if (last) out.push('');
    } else {
      if (normal.value === '' && !last) sawEmpty = true;
      out.push(normal.value);
    }
    offset += segment.length + 1;
  }
  return { ok: true, segments: out };
}

/** Does the rule's prefix match the request's segments? */
export function pathMatches(prefix: readonly string[], segments: readonly string[]): boolean {
  if (prefix.length > segments.length) return false;
  for (let i = 0; i < prefix.length; i++) if (prefix[i] !== segments[i]) return false;
  return true;
}

/** The longer of two prefixes when one extends the other; null when they diverge. */
export function intersectPaths(a: readonly string[], b: readonly string[]): readonly string[] | null {
  if (pathMatches(a, b)) return b;
  if (pathMatches(b, a)) return a;
  return null;
}

export function formatPath(segments: readonly string[]): string {
  return `/${segments.join('/')}`;
}
