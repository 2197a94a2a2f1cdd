// The sluice kit for JavaScript connectors (componentize-js): the Rust SDK's
// essentials with the same rules.
//
// - parseConfig(text, schema): the config checked against the JSON Schema
//   `describe` advertises (types, required, unknown fields, bounds, enums),
//   `invalid-config` naming the field;
// - record(data, { id, metadata, timestamp });
// - apply(req, items) and predicate(req): filters, sort, fields, offset and
//   cursor pages and the total count (query.js, tested against the same cases
//   as the Rust SDK and the Python kit);
// - typed errors: `throw notFound("...")`, invalidRequest, unsupported,
//   denied, unavailable, rateLimited, timeout, internal, invalidConfig;
// - guarded(cls): every method's uncaught exception becomes `internal`
//   carrying its stack, instead of a crash.
//
// The module exports `connectorApi = { describe, Session, RecordStream }`:
// an exported interface is an object named after it (camelCase), its
// resources classes in it.

import * as query from "./query.js";

export { query };

const error = (tag) => (val) => ({ tag, val });
export const invalidConfig = error("invalid-config");
export const invalidRequest = error("invalid-request");
export const unsupported = error("unsupported");
export const denied = error("denied");
export const notFound = error("not-found");
export const unavailable = error("unavailable");
export const rateLimited = (seconds) => ({ tag: "rate-limited", val: seconds });
export const timeout = () => ({ tag: "timeout" });
export const internal = error("internal");

const TAGS = new Set([
  "invalid-config", "invalid-request", "unsupported", "denied", "not-found",
  "unavailable", "rate-limited", "timeout", "internal",
]);
const isTyped = (err) => err !== null && typeof err === "object" && TAGS.has(err.tag);

/** A record holding `data` (JSON-serialisable). */
export function record(data, { id, metadata, timestamp } = {}) {
  return {
    id: id == null ? undefined : String(id),
    data: JSON.stringify(data),
    metadata: metadata == null ? undefined : JSON.stringify(metadata),
    timestamp: timestamp == null ? undefined : BigInt(timestamp),
  };
}

export function capabilities({
  streaming = false, pagination = false, filtering = false, sorting = false,
  aggregation = false, transactions = false, maxPageSize,
} = {}) {
  return { streaming, pagination, filtering, sorting, aggregation, transactions, maxPageSize };
}

export function descriptor(name, version, description, configSchema, caps) {
  return { name, version, description, configSchema: JSON.stringify(configSchema), capabilities: caps };
}

/** A request's filters as `[field, op, value]` triples for `query`. */
export const filtersOf = (req) => req.filters.map((f) => [f.field, f.op, f.value]);

function typed(run) {
  try {
    return run();
  } catch (err) {
    if (err instanceof query.InvalidRequest) throw invalidRequest(err.message);
    throw err;
  }
}

/** The request's filters compiled once (for a stream's records). */
export const predicate = (req) => typed(() => new query.Predicate(filtersOf(req)));

/** A fetch response: `items` (JSON objects, or `[id, data]` pairs)
 *  filtered, sorted, paged and projected as `req` asks, with the total. */
export function apply(req, items) {
  const pairs = [...items].map((item) => (Array.isArray(item) ? item : [undefined, item]));
  const p = req.pagination;
  const request = {
    filters: filtersOf(req),
    sort: req.sort.map((s) => [s.field, s.direction === "desc"]),
    fields: req.fields,
    page: p == null ? null : [p.pageSize, p.offset == null ? null : Number(p.offset), p.cursor ?? null],
  };
  const { kept, total, nextCursor } = typed(() => query.apply(pairs, request, (pair) => pair[1]));
  return {
    records: kept.map(([pair, data]) => record(data, { id: pair[0] })),
    totalCount: BigInt(total),
    nextCursor: nextCursor ?? undefined,
  };
}

const KINDS = {
  string: (v) => typeof v === "string",
  integer: (v) => Number.isInteger(v),
  number: (v) => typeof v === "number",
  boolean: (v) => typeof v === "boolean",
  object: (v) => v !== null && typeof v === "object" && !Array.isArray(v),
  array: (v) => Array.isArray(v),
  null: (v) => v === null,
};

function check(value, schema, where) {
  if (schema.type !== undefined) {
    const kinds = Array.isArray(schema.type) ? schema.type : [schema.type];
    if (!kinds.some((k) => KINDS[k](value))) {
      throw invalidConfig(`field \`${where}\`: expected ${kinds.join(" or ")}, got ${JSON.stringify(value)}`);
    }
  }
  if (schema.enum !== undefined && !schema.enum.includes(value)) {
    throw invalidConfig(`field \`${where}\`: one of ${JSON.stringify(schema.enum)}`);
  }
  if (typeof value === "number") {
    if (schema.minimum !== undefined && value < schema.minimum) throw invalidConfig(`field \`${where}\`: at least ${schema.minimum}`);
    if (schema.maximum !== undefined && value > schema.maximum) throw invalidConfig(`field \`${where}\`: at most ${schema.maximum}`);
  }
  if (KINDS.object(value) && schema.properties !== undefined) checkObject(value, schema, `${where}.`);
}

function checkObject(value, schema, prefix) {
  const properties = schema.properties ?? {};
  for (const name of schema.required ?? []) {
    if (!Object.hasOwn(value, name)) throw invalidConfig(`field \`${prefix}${name}\`: missing`);
  }
  for (const [name, item] of Object.entries(value)) {
    if (Object.hasOwn(properties, name)) {
      check(item, properties[name], prefix + name);
    } else if (schema.additionalProperties === false) {
      const known = Object.keys(properties).join(", ") || "none";
      throw invalidConfig(`field \`${prefix}${name}\`: unknown field (known: ${known})`);
    }
  }
}

/** The config `text` as an object, checked against `schema` (the JSON
 *  Schema `describe` gives): `invalid-config` naming the field otherwise. */
export function parseConfig(text, schema) {
  let value;
  try {
    value = JSON.parse(text || "{}");
  } catch (err) {
    throw invalidConfig(`the config is not JSON (${err.message})`);
  }
  if (!KINDS.object(value)) throw invalidConfig("the config must be a JSON object");
  checkObject(value, schema, "");
  return value;
}

function guard(method) {
  return function guardedMethod(...args) {
    try {
      return method.apply(this, args);
    } catch (err) {
      if (isTyped(err)) throw err;
      // SpiderMonkey's stack holds the frames only: the message goes first.
      const text = err instanceof Error ? `${err.name}: ${err.message}\n${err.stack ?? ""}` : String(err);
      throw internal(text.slice(-4000));
    }
  };
}

/** Wrap every method of `cls` (static ones too): an uncaught exception
 *  becomes `internal` carrying its stack. */
export function guarded(cls) {
  for (const target of [cls, cls.prototype]) {
    for (const name of Object.getOwnPropertyNames(target)) {
      if (name === "constructor" || name === "prototype" || name === "length" || name === "name") continue;
      const member = Object.getOwnPropertyDescriptor(target, name);
      if (typeof member.value === "function") {
        Object.defineProperty(target, name, { ...member, value: guard(member.value) });
      }
    }
  }
  return cls;
}
