// Files → tenants. A tenant may span several files: its integrations, agents, apps, issuers and
// user rights are the union of its files, and each setting may be declared once (or repeated with
// the same value). `monitoring:` is declared in one file only: merging two halves of a detection
// policy would make what runs depend on how the files are split. Client ids share one namespace across the whole deployment, because the
// token endpoint finds a client by client_id before it knows the tenant.
import { type Diagnostic, error, formatPosition, type Position } from './diagnostic.ts';
import type { NodePath, ParsedFile } from './document.ts';
import type {
  AgentData,
  AppData,
  FederationData,
  IssuerData,
  MonitoringData,
  PolicyFileData,
  SettingsData,
  UserRightData,
} from './shape.ts';

export interface FileData {
  readonly file: ParsedFile;
  readonly data: PolicyFileData;
}

/** A value with the place it was written, so later checks can point at it. */
export interface Located<T> {
  readonly value: T;
  readonly file: ParsedFile;
  readonly path: NodePath;
}

export type SettingKey = keyof SettingsData;

export interface TenantDraft {
  readonly id: string;
  readonly settings: Map<SettingKey, Located<unknown>>;
  readonly owns: Located<readonly string[]>[];
  readonly federation: Located<FederationData>[];
  readonly integrations: Map<string, Located<readonly string[]>>;
  readonly agents: Map<string, Located<AgentData>>;
  readonly apps: Map<string, Located<AppData>>;
  readonly issuers: Located<IssuerData>[];
  readonly users: Located<UserRightData>[];
  /** The tenant's `monitoring:`, from the one file that declares it; null: not monitored. */
  monitoring: Located<MonitoringData> | null;
}

export interface ClientEntry {
  readonly kind: 'agent' | 'app';
  readonly tenant: string;
  readonly at: Position;
}

export interface Assembly {
  readonly tenants: Map<string, TenantDraft>;
  /** Every client id of the deployment, at its first definition. */
  readonly clients: Map<string, ClientEntry>;
  readonly diagnostics: Diagnostic[];
}

export function assembleTenants(files: readonly FileData[]): Assembly {
  const tenants = new Map<string, TenantDraft>();
  const diagnostics: Diagnostic[] = [];
  for (const { file, data } of files) {
    let draft = tenants.get(data.tenant);
    if (!draft) {
      draft = emptyTenant(data.tenant);
      tenants.set(data.tenant, draft);
    }
    mergeFile(draft, file, data, diagnostics);
  }
  const clients = collectClients(files, diagnostics);
  return { tenants, clients, diagnostics };
}

function emptyTenant(id: string): TenantDraft {
  return {
    id,
    settings: new Map(),
    owns: [],
    federation: [],
    integrations: new Map(),
    agents: new Map(),
    apps: new Map(),
    issuers: [],
    users: [],
    monitoring: null,
  };
}

function mergeFile(draft: TenantDraft, file: ParsedFile, data: PolicyFileData, out: Diagnostic[]): void {
  const here = <T>(value: T, path: NodePath): Located<T> => ({ value, file, path });

  for (const [key, value] of Object.entries(data.settings ?? {}) as [SettingKey, unknown][]) {
    const path = ['settings', key];
    const first = draft.settings.get(key);
    if (!first) {
      draft.settings.set(key, here(value, path));
    } else if (JSON.stringify(first.value) !== JSON.stringify(value)) {
      out.push(
        error(
          file.locateKey(path),
          `settings.${key} of tenant '${draft.id}' is already set to ${JSON.stringify(first.value)} at ` +
            `${formatPosition(first.file.locateKey(first.path))}; declare each setting once per tenant`,
        ),
      );
    }
  }
  if (data.owns) draft.owns.push(here(data.owns, ['owns']));
  (data.federation ?? []).forEach((entry, i) => {
    draft.federation.push(here(entry, ['federation', i]));
  });
  for (const [name, rules] of Object.entries(data.integrations ?? {})) {
    addUnique(
      draft.integrations,
      name,
      here(rules, ['integrations', name]),
      `integration '${name}'`,
      draft.id,
      out,
    );
  }
  // Agents and apps are checked for uniqueness across the deployment in collectClients.
  for (const [name, agent] of Object.entries(data.agents ?? {})) {
    if (!draft.agents.has(name)) draft.agents.set(name, here(agent, ['agents', name]));
  }
  for (const [name, app] of Object.entries(data.apps ?? {})) {
    if (!draft.apps.has(name)) draft.apps.set(name, here(app, ['apps', name]));
  }
  (data.trusted_issuers ?? []).forEach((issuer, i) => {
    const path = ['trusted_issuers', i];
    const first = draft.issuers.find((other) => other.value.issuer === issuer.issuer);
    if (first) {
      out.push(
        error(
          file.locate([...path, 'issuer']),
          `trusted issuer '${issuer.issuer}' of tenant '${draft.id}' is already declared at ` +
            `${formatPosition(first.file.locate([...first.path, 'issuer']))}; declare each issuer once`,
        ),
      );
      return;
    }
    draft.issuers.push(here(issuer, path));
  });
  (data.users ?? []).forEach((user, i) => {
    draft.users.push(here(user, ['users', i]));
  });
  if (data.monitoring) {
    const first = draft.monitoring;
    if (!first) {
      draft.monitoring = here(data.monitoring, ['monitoring']);
    } else {
      out.push(
        error(
          file.locateKey(['monitoring']),
          `monitoring of tenant '${draft.id}' is already declared at ` +
            `${formatPosition(first.file.locateKey(first.path))}; declare monitoring in one file of the tenant`,
        ),
      );
    }
  }
}

function addUnique<T>(
  map: Map<string, Located<T>>,
  name: string,
  entry: Located<T>,
  what: string,
  tenant: string,
  out: Diagnostic[],
): void {
  const first = map.get(name);
  if (!first) {
    map.set(name, entry);
    return;
  }
  out.push(
    error(
      entry.file.locateKey(entry.path),
      `${what} of tenant '${tenant}' is already defined at ${formatPosition(first.file.locateKey(first.path))}; ` +
        'rename one or remove the duplicate',
    ),
  );
}

function collectClients(files: readonly FileData[], out: Diagnostic[]): Map<string, ClientEntry> {
  const occurrences: { id: string; entry: ClientEntry }[] = [];
  for (const { file, data } of files) {
    for (const kind of ['agents', 'apps'] as const) {
      for (const id of Object.keys(data[kind] ?? {})) {
        const entry: ClientEntry = {
          kind: kind === 'agents' ? 'agent' : 'app',
          tenant: data.tenant,
          at: file.locateKey([kind, id]),
        };
        occurrences.push({ id, entry });
      }
    }
  }
  // Files arrive sorted; inside a file, the earlier line is the first definition.
  occurrences.sort((a, b) => fileOrder(files, a.entry.at, b.entry.at));
  const clients = new Map<string, ClientEntry>();
  for (const { id, entry } of occurrences) {
    const first = clients.get(id);
    if (!first) {
      clients.set(id, entry);
      continue;
    }
    out.push(
      error(
        entry.at,
        `client id '${id}' is already used by the ${first.kind} '${id}' of tenant '${first.tenant}' at ` +
          `${formatPosition(first.at)}; client ids (agent and app names) are unique across the deployment, rename one`,
      ),
    );
  }
  return clients;
}

function fileOrder(files: readonly FileData[], a: Position, b: Position): number {
  const index = (p: Position) => files.findIndex((f) => f.file.source.file === p.file);
  return index(a) - index(b) || a.line - b.line || a.column - b.column;
}
