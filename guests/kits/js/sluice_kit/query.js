// Filters, sort, field selection and pagination over in-memory records:
// the Rust SDK's `query` module, rule for rule (see `wit/connector.wit` and
// `guests/kits/query-cases.json`, which all kits are tested against).
//
// Comparison rules: numbers compare numerically, strings by code unit,
// booleans `false < true`; a string that reads as a number compares
// numerically against a number. Values of different kinds are unequal and
// unordered, so `lt`, `le`, `gt`, `ge` and `like` are false for them. Field
// names may be dotted paths into nested objects (`address.city`).
//
// NULL: a missing field is null; `eq null` matches null and `ne null` the
// rest; `eq v` never matches null and `ne v` does; `in` matches null only
// when its list holds null, `not-in` exactly what `in` does not; `lt`, `le`,
// `gt`, `ge` and `like` never match null, nor compare with a null operand.
//
// JavaScript numbers are doubles: integers past 2^53 lose precision, and
// `1` and `1.0` are one value.

export const OPS = ["eq", "ne", "lt", "le", "gt", "ge", "in", "not-in", "like", "is-null", "is-not-null"];

// What Rust's `f64::from_str` accepts, after trimming.
const NUMBER = /^[+-]?(?:(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?|[iI][nN][fF](?:[iI][nN][iI][tT][yY])?|[nN][aA][nN])$/;

/** A filter, sort or page the request got wrong. */
export class InvalidRequest extends Error {}

const isNumber = (v) => typeof v === "number";
const isObject = (v) => v !== null && typeof v === "object" && !Array.isArray(v);

function asNumber(value) {
  if (isNumber(value)) return value;
  if (typeof value === "string") {
    const text = value.trim();
    if (NUMBER.test(text)) {
      const lower = text.toLowerCase().replace(/^\+/, "");
      if (lower === "inf" || lower === "infinity") return Infinity;
      if (lower === "-inf" || lower === "-infinity") return -Infinity;
      if (lower.endsWith("nan")) return NaN;
      return Number(text);
    }
  }
  return null;
}

function cmp(x, y) {
  if (Number.isNaN(x) || Number.isNaN(y)) return null;
  return x < y ? -1 : x > y ? 1 : 0;
}

/** -1, 0 or 1 by the rules above; null when `a` and `b` are not comparable. */
export function compare(a, b) {
  if (isNumber(a) && isNumber(b)) return cmp(a, b);
  if (typeof a === "string" && typeof b === "string") return cmp(a, b);
  if (typeof a === "boolean" && typeof b === "boolean") return cmp(Number(a), Number(b));
  if (a === null && b === null) return 0;
  if ((typeof a === "string" && isNumber(b)) || (isNumber(a) && typeof b === "string")) {
    const x = asNumber(a);
    const y = asNumber(b);
    if (x === null || y === null) return null;
    return cmp(x, y);
  }
  return null;
}

function same(a, b) {
  if (Array.isArray(a) && Array.isArray(b)) {
    return a.length === b.length && a.every((x, i) => same(x, b[i]));
  }
  if (isObject(a) && isObject(b)) {
    const keys = Object.keys(a);
    return keys.length === Object.keys(b).length && keys.every((k) => k in b && same(a[k], b[k]));
  }
  return a === b;
}

export function equal(a, b) {
  return compare(a, b) === 0 || same(a, b);
}

/** SQL LIKE: `%` matches any run of characters, `_` exactly one. */
export function like(text, pattern) {
  const t0 = Array.from(text);
  const p0 = Array.from(pattern);
  let t = 0;
  let p = 0;
  let star = null;
  while (t < t0.length) {
    if (p < p0.length && (p0[p] === "_" || p0[p] === t0[t])) {
      t++;
      p++;
    } else if (p < p0.length && p0[p] === "%") {
      star = [p, t];
      p++;
    } else if (star !== null) {
      p = star[0] + 1;
      t = star[1] + 1;
      star = [star[0], star[1] + 1];
    } else {
      return false;
    }
  }
  return p0.slice(p).every((c) => c === "%");
}

const MISSING = Symbol("missing");

/** A field of a JSON object: as named, or by its dotted path; MISSING when absent. */
export function lookup(record, field) {
  if (!isObject(record)) return MISSING;
  if (Object.hasOwn(record, field)) return record[field];
  let value = record;
  for (const part of field.split(".")) {
    if (!isObject(value) || !Object.hasOwn(value, part)) return MISSING;
    value = value[part];
  }
  return value;
}

/** Filters compiled once: `[field, op, value-as-JSON-text]` triples. */
export class Predicate {
  constructor(filters) {
    this.conditions = filters.map(([field, op, text]) => {
      if (!OPS.includes(op)) throw new InvalidRequest(`filter on \`${field}\`: unknown operator \`${op}\``);
      let operand = null;
      if (op !== "is-null" && op !== "is-not-null") {
        try {
          operand = JSON.parse(text);
        } catch (err) {
          throw new InvalidRequest(
            `filter on \`${field}\`: value \`${text}\` is not JSON (${err.message}); quote strings, e.g. "\\"text\\""`,
          );
        }
        if ((op === "in" || op === "not-in") && !Array.isArray(operand)) {
          throw new InvalidRequest(`filter on \`${field}\`: \`in\`/\`not-in\` needs a JSON array, got \`${text}\``);
        }
        if (op === "like" && typeof operand !== "string") {
          throw new InvalidRequest(`filter on \`${field}\`: \`like\` needs a JSON string pattern, got \`${text}\``);
        }
      }
      return [field, op, operand];
    });
  }

  matches(record) {
    return this.conditions.every(([field, op, operand]) => holds(record, field, op, operand));
  }
}

function holds(record, field, op, operand) {
  let value = lookup(record, field);
  if (value === MISSING) value = null;
  switch (op) {
    case "is-null":
      return value === null;
    case "is-not-null":
      return value !== null;
    case "eq":
      return equal(value, operand);
    case "ne":
      return !equal(value, operand);
    case "lt":
    case "le":
    case "gt":
    case "ge": {
      if (value === null || operand === null) return false;
      const order = compare(value, operand);
      if (order === null) return false;
      return { lt: order < 0, le: order <= 0, gt: order > 0, ge: order >= 0 }[op];
    }
    case "in":
      return operand.some((item) => equal(value, item));
    case "not-in":
      return !operand.some((item) => equal(value, item));
    case "like":
      if (typeof value === "string") return like(value, operand);
      if (isNumber(value)) return like(String(value), operand);
      return false;
    default:
      return false;
  }
}

function rank(value) {
  if (value === MISSING || value === null) return 0;
  if (typeof value === "boolean") return 1;
  if (isNumber(value)) return 2;
  if (typeof value === "string") return 3;
  if (Array.isArray(value)) return 4;
  return 5;
}

function sortOrder(a, b) {
  const ra = rank(a);
  const rb = rank(b);
  if (ra === rb && a !== MISSING && b !== MISSING) return compare(a, b) ?? 0;
  return ra < rb ? -1 : ra > rb ? 1 : 0;
}

/** Sort (stably) by `keys`, `[field, descending]` pairs, most significant first. */
export function sortValues(items, keys, data = (item) => item) {
  if (keys.length === 0) return items;
  return [...items].sort((x, y) => {
    for (const [field, descending] of keys) {
      const o = sortOrder(lookup(data(x), field), lookup(data(y), field));
      if (o !== 0) return descending ? -o : o;
    }
    return 0;
  });
}

/** Keep only `fields` of a JSON object (all of them when `fields` is empty). */
export function project(record, fields) {
  if (fields.length === 0 || !isObject(record)) return record;
  const kept = {};
  for (const field of fields) {
    const value = lookup(record, field);
    if (value !== MISSING) kept[field] = value;
  }
  return kept;
}

export const offsetCursor = (offset) => `offset:${offset}`;

export function parseOffsetCursor(cursor) {
  const digits = cursor.startsWith("offset:") ? cursor.slice("offset:".length) : "";
  if (!/^\d+$/.test(digits)) throw new InvalidRequest(`cursor \`${cursor}\` was not issued by this connector`);
  return Number(digits);
}

/**
 * Filter, sort, page and project `items` (whose JSON data `data` gives).
 * `page` is null (everything) or `[pageSize, offset, cursor]`; the cursor
 * wins over the offset. Returns `{ kept: [[item, projected data]], total, nextCursor }`.
 */
export function apply(items, { filters = [], sort = [], fields = [], page = null } = {}, data = (item) => item) {
  const predicate = new Predicate(filters);
  const matching = sortValues(items.filter((item) => predicate.matches(data(item))), sort, data);
  const total = matching.length;
  let start = 0;
  let size = null;
  if (page !== null) {
    const [pageSize, offset, cursor] = page;
    if (pageSize === 0) throw new InvalidRequest("page size must be at least 1");
    size = pageSize;
    start = cursor != null ? parseOffsetCursor(cursor) : (offset ?? 0);
  }
  const end = size === null ? total : Math.min(start + size, total);
  const nextCursor = size !== null && end < total ? offsetCursor(end) : null;
  const window = end > start ? matching.slice(Math.min(start, total), end) : [];
  return { kept: window.map((item) => [item, project(data(item), fields)]), total, nextCursor };
}
