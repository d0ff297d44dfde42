// Agents cannot pass for users (RFC 9700 §4.15, "client impersonating resource owner"). A
// client-credentials token carries `sub` = the client's own id; a delegated token carries `sub` =
// the user. A user rule that names a client id as a subject would let that client's own tokens
// match it (a token of this server is accepted as a subject token, for chains), and a resource
// server that decides on `sub` alone could not tell the client from the user. So no user subject
// a rule names may equal a client id, of an agent or an app, in any tenant: client ids are one
// namespace across the deployment, and a resource server behind the gateway may not look at
// `tenant` before it trusts `sub`.
import { describe } from './describe.ts';
import { type Diagnostic, error, formatPosition } from './diagnostic.ts';
import type { NodePath } from './document.ts';
import type { StringOrList, UserRightData } from './shape.ts';
import type { ClientEntry, Located } from './tenants.ts';

/** Reports every subject of the rule that is also a client id, at that value. */
export function checkUserSubjects(
  user: Located<UserRightData>,
  clients: ReadonlyMap<string, ClientEntry>,
  out: Diagnostic[],
): void {
  for (const { path, subject } of namedSubjects(user)) {
    // Exact: user subjects are case-sensitive strings, and so are client ids.
    const client = clients.get(subject);
    if (client) out.push(error(user.file.locate(path), impersonation(path, subject, client)));
  }
}

/**
 * Every subject value of the rule with its path: `match.sub` (the issuer's subject claim) and
 * `match.claims.sub` (the `sub` claim by name, which is what this server's own tokens carry).
 */
function namedSubjects(user: Located<UserRightData>): { path: NodePath; subject: string }[] {
  const { match } = user.value;
  const places: [NodePath, StringOrList | undefined][] = [
    [[...user.path, 'match', 'sub'], match.sub],
    [[...user.path, 'match', 'claims', 'sub'], match.claims?.sub],
  ];
  return places.flatMap(([path, value]) => {
    if (value === undefined) return [];
    if (typeof value === 'string') return [{ path, subject: value }];
    return value.map((subject, i) => ({ path: [...path, i], subject }));
  });
}

function impersonation(path: NodePath, subject: string, client: ClientEntry): string {
  return (
    `${describe(path)} '${subject}' is the client id of the ${client.kind} '${subject}' of tenant ` +
    `'${client.tenant}' at ${formatPosition(client.at)}: a token issued to that ${client.kind} itself ` +
    `carries sub '${subject}' too, so it could pass for this user (RFC 9700 §4.15); rename the ` +
    `${client.kind}, or fix the user rule to name the user's real subject`
  );
}
