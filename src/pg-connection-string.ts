/**
 * The one place poolwatch reads a PostgreSQL connection string, for `pgFactory` (which rejects
 * what it cannot read) and for naming an application's own `pg.Pool` (which then names the pool
 * without the string). Outside src/drivers and src/adapters because both layers use it.
 *
 * Only host, port and database are read: never the user or password. The danger is not in
 * reading those fields but in reading the wrong part of the string as one of them. Two readers
 * of the same string (pg's, a WHATWG `URL`) disagree on strings like these, and whatever lands
 * in the "database" or "host" then becomes a pool name, a span attribute and a metric label:
 *
 *     user:s3cr3t@127.0.0.1:5432/test      no scheme: `user:` reads as one, the rest as a path
 *     postgres://user:5432/XY@host/db      an unencoded `/` in the password ends the authority
 *     postgres://user:12?XY@host/db        an unencoded `?` (or `#`) does too
 *
 * So a string is read only when it is unambiguous: a `postgres://` / `postgresql://` URL (or
 * pg's `socket:` form, or a `/socket/dir dbname` path), whose credentials, if any, end at the
 * last `@` of the authority and with no `@` anywhere after it, no whitespace, a numeric port
 * and a plain host. Anything else is "not readable": callers must then not use the string at
 * all, and must never quote it (it may hold the password).
 */
import type { ServerInfo } from './types';

/** Where a connection string points. Any field may be missing. */
export interface PgTarget {
  readonly host?: string;
  readonly port?: number;
  readonly database?: string;
}

/** The parts of a pg client or pool config this module looks at. */
export interface PgConnectionFields {
  readonly connectionString?: unknown;
  readonly host?: unknown;
  readonly port?: unknown;
  readonly database?: unknown;
  readonly user?: unknown;
}

const URL_SCHEME = /^(postgres|postgresql):\/\//i;
const SOCKET_SCHEME = /^socket:/i;
/** A registered name, an IPv4 address or a percent-encoded socket directory. */
const PLAIN_HOST = /^[A-Za-z0-9._~%-]*$/;
const IPV6_HOST = /^\[[0-9A-Fa-f:.]+\]$/;

/**
 * Host, port and database of a pg connection string, as pg reads them; `undefined` when the
 * string is not one poolwatch reads unambiguously (see the file comment). Never throws, and the
 * result never holds anything from the user-info part of the string.
 */
export function parsePgConnectionString(value: unknown): PgTarget | undefined {
  if (typeof value !== 'string' || value === '') return undefined;
  if (value.startsWith('/')) return parseSocketPath(value);
  // Whitespace and control characters: pg re-encodes such strings before parsing, a WHATWG
  // URL silently drops some of them. Neither reading is one to trust.
  // eslint-disable-next-line no-control-regex -- control characters are what is looked for
  if (/[\s\x00-\x1f\x7f]/.test(value)) return undefined;
  if (SOCKET_SCHEME.test(value)) return parseSocketUrl(value);
  const scheme = URL_SCHEME.exec(value);
  if (scheme === null) return undefined;

  const rest = value.slice(scheme[0].length);
  const authorityEnd = firstIndexOf(rest, '/?#');
  const authority = rest.slice(0, authorityEnd);
  const tail = rest.slice(authorityEnd);
  // An `@` after the authority means the authority ended inside the credentials.
  if (tail.includes('@')) return undefined;
  const hostPort = authority.slice(authority.lastIndexOf('@') + 1);
  const parsedHost = parseHostPort(hostPort);
  if (parsedHost === undefined) return undefined;

  const queryStart = firstIndexOf(tail, '?#');
  const path = tail.slice(0, queryStart);
  const fragmentStart = tail.indexOf('#');
  const query =
    tail[queryStart] === '?'
      ? tail.slice(queryStart + 1, fragmentStart === -1 ? undefined : fragmentStart)
      : '';
  const params = new URLSearchParams(query);

  let host = parsedHost.host;
  let port = parsedHost.port;
  const hostParam = params.get('host');
  if (hostParam) host = hostParam;
  const portParam = params.get('port');
  if (portParam) {
    port = portOf(portParam);
    if (port === undefined) return undefined;
  }
  const database = path.length > 1 ? safeDecode(path.slice(1), decodeURI) : undefined;
  if (database === undefined && path.length > 1) return undefined;
  return target(host, port, database);
}

/** `/socket/dir dbname`, as pg reads it: the first word is the host, the second the database. */
function parseSocketPath(value: string): PgTarget | undefined {
  const [host, database, ...more] = value.split(' ');
  // A directory (never `//`, which is not one) and a database name; no `@` or `:` in either,
  // which would mean credentials were typed into this form.
  if (more.length > 0 || !/^\/(?!\/)[^\s@:?#]*$/.test(host!)) return undefined;
  if (database !== undefined && !/^[^\s@:/?#]+$/.test(database)) return undefined;
  return target(host, undefined, database);
}

/** pg's `socket:/dir?db=name` (optionally `socket://user:pw@/dir?db=name`). */
function parseSocketUrl(value: string): PgTarget | undefined {
  let rest = value.replace(SOCKET_SCHEME, '');
  if (rest.startsWith('//')) {
    // pg reads the socket directory from the path; credentials (or a host) before it are skipped.
    rest = rest.slice(2);
    rest = rest.slice(firstIndexOf(rest, '/?#'));
  }
  if (rest.includes('@')) return undefined;
  const queryStart = firstIndexOf(rest, '?#');
  const host = safeDecode(rest.slice(0, queryStart), decodeURI);
  if (host === undefined) return undefined;
  const fragmentStart = rest.indexOf('#');
  const params = new URLSearchParams(
    rest[queryStart] === '?'
      ? rest.slice(queryStart + 1, fragmentStart === -1 ? undefined : fragmentStart)
      : '',
  );
  return target(host, undefined, params.get('db') ?? undefined);
}

function parseHostPort(text: string): { host?: string; port?: number } | undefined {
  let host = text;
  let port: number | undefined;
  const colon = text.lastIndexOf(':');
  if (colon !== -1 && !(text.startsWith('[') && text.endsWith(']'))) {
    port = portOf(text.slice(colon + 1));
    if (port === undefined && text.slice(colon + 1) !== '') return undefined;
    host = text.slice(0, colon);
  }
  if (IPV6_HOST.test(host)) return { host: host.slice(1, -1), port };
  if (!PLAIN_HOST.test(host)) return undefined;
  const decoded = safeDecode(host, decodeURIComponent);
  if (decoded === undefined) return undefined;
  return { host: decoded, port };
}

function target(
  host: string | undefined,
  port: number | undefined,
  database: string | undefined,
): PgTarget {
  const out: { host?: string; port?: number; database?: string } = {};
  if (host) out.host = host;
  if (port !== undefined) out.port = port;
  if (database) out.database = database;
  return out;
}

/**
 * Where a pg client or pool connects, as pg resolves it: the connection string first (when
 * readable), then the config's fields, then `PGHOST`, `PGPORT`, `PGDATABASE` and pg's defaults
 * (`localhost`, 5432). With `databaseFromUser`, a missing database falls back to the user name as
 * pg does; without it, `namespace` is left out. A connection string that is not readable is
 * ignored here: the caller decides whether that is an error (`pgFactory`) or not (naming an
 * application's own pool).
 */
export function resolvePgServer(
  config: PgConnectionFields,
  { databaseFromUser = false } = {},
): ServerInfo {
  const fromString = parsePgConnectionString(config.connectionString) ?? {};
  const host =
    fromString.host ?? stringOf(config.host) ?? stringOf(process.env.PGHOST) ?? 'localhost';
  const port = fromString.port ?? portOf(config.port) ?? portOf(process.env.PGPORT) ?? 5432;
  let database =
    fromString.database ?? stringOf(config.database) ?? stringOf(process.env.PGDATABASE);
  if (database === undefined && databaseFromUser) {
    database = stringOf(config.user) ?? stringOf(process.env.PGUSER) ?? stringOf(process.env.USER);
  }
  const info: { system: string; address: string; port: number; namespace?: string } = {
    system: 'postgresql',
    address: host,
    port,
  };
  if (database !== undefined) info.namespace = database;
  return info;
}

/**
 * Where an application's `pg.Pool` connects, for its name and telemetry. Never the user name as
 * the database (pg's fallback): it would put a user name into pool names. A connection string
 * that is not readable is not used at all.
 */
export function pgPoolServerInfo(options: Readonly<Record<string, unknown>>): ServerInfo {
  return resolvePgServer(options);
}

function firstIndexOf(text: string, chars: string): number {
  for (let i = 0; i < text.length; i++) if (chars.includes(text[i]!)) return i;
  return text.length;
}

function safeDecode(text: string, decode: (s: string) => string): string | undefined {
  try {
    return decode(text);
  } catch {
    return undefined;
  }
}

function stringOf(value: unknown): string | undefined {
  return typeof value === 'string' && value !== '' ? value : undefined;
}

function portOf(value: unknown): number | undefined {
  if (typeof value === 'string' && !/^\d{1,5}$/.test(value)) return undefined;
  const port = typeof value === 'number' ? value : typeof value === 'string' ? Number(value) : NaN;
  return Number.isInteger(port) && port > 0 && port < 65536 ? port : undefined;
}
