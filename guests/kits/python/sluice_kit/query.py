"""Filters, sort, field selection and pagination over in-memory records:
the Rust SDK's `query` module, rule for rule (see `wit/connector.wit` and
`guests/kits/query-cases.json`, which both are tested against).

Comparison rules: numbers compare numerically (`1 == 1.0`), strings by code
point, booleans `false < true`; a string that reads as a number compares
numerically against a number. Values of different kinds are unequal and
unordered, so `lt`, `le`, `gt`, `ge` and `like` are false for them. Field
names may be dotted paths into nested objects (`address.city`).

NULL: a missing field is null; `eq null` matches null and `ne null` the
rest; `eq v` never matches null and `ne v` does; `in` matches null only when
its list holds null, `not-in` exactly what `in` does not; `lt`, `le`, `gt`,
`ge` and `like` never match null, nor compare with a null operand.

Pure Python on plain JSON values, so it runs (and is tested) anywhere.
"""

import functools
import json
import re

OPS = ("eq", "ne", "lt", "le", "gt", "ge", "in", "not-in", "like", "is-null", "is-not-null")

# What Rust's `f64::from_str` accepts, after trimming.
_NUMBER = re.compile(r"[+-]?(?:(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?|(?i:inf|infinity|nan))")


class InvalidRequest(Exception):
    """A filter, sort or page the request got wrong."""


def _is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _as_number(value):
    if _is_number(value):
        return float(value)
    if isinstance(value, str):
        text = value.strip()
        if _NUMBER.fullmatch(text):
            return float(text)
    return None


def _cmp(x, y):
    if x != x or y != y:  # NaN is unordered
        return None
    return (x > y) - (x < y)


def compare(a, b):
    """-1, 0 or 1 by the rules above; None when `a` and `b` are not comparable."""
    if _is_number(a) and _is_number(b):
        if isinstance(a, int) and isinstance(b, int):
            return _cmp(a, b)
        return _cmp(float(a), float(b))
    if isinstance(a, str) and isinstance(b, str):
        return _cmp(a, b)
    if isinstance(a, bool) and isinstance(b, bool):
        return _cmp(a, b)
    if a is None and b is None:
        return 0
    if (isinstance(a, str) and _is_number(b)) or (_is_number(a) and isinstance(b, str)):
        x, y = _as_number(a), _as_number(b)
        if x is None or y is None:
            return None
        return _cmp(x, y)
    return None


def _same(a, b):
    """JSON equality, kinds kept apart (`true` is not `1`, `1` is not `1.0`)."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if _is_number(a) and _is_number(b):
        return type(a) is type(b) and a == b
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    return type(a) is type(b) and a == b


def equal(a, b):
    return compare(a, b) == 0 or _same(a, b)


def like(text, pattern):
    """SQL LIKE: `%` matches any run of characters, `_` exactly one."""
    t = p = 0
    star = None
    while t < len(text):
        if p < len(pattern) and (pattern[p] == "_" or pattern[p] == text[t]):
            t += 1
            p += 1
        elif p < len(pattern) and pattern[p] == "%":
            star = (p, t)
            p += 1
        elif star is not None:
            p = star[0] + 1
            t = star[1] + 1
            star = (star[0], star[1] + 1)
        else:
            return False
    return all(c == "%" for c in pattern[p:])


_MISSING = object()


def lookup(record, field):
    """A field of a JSON object: as named, or by its dotted path; `_MISSING` when absent."""
    if not isinstance(record, dict):
        return _MISSING
    if field in record:
        return record[field]
    parts = field.split(".")
    value = record
    for part in parts:
        if not isinstance(value, dict) or part not in value:
            return _MISSING
        value = value[part]
    return value


def _number_text(value):
    return str(value) if isinstance(value, int) else repr(value)


class Predicate:
    """Filters compiled once: `(field, op, value-as-JSON-text)` triples."""

    def __init__(self, filters):
        self.conditions = []
        for field, op, text in filters:
            if op not in OPS:
                raise InvalidRequest(f"filter on `{field}`: unknown operator `{op}`")
            operand = None
            if op not in ("is-null", "is-not-null"):
                try:
                    operand = json.loads(text)
                except ValueError as err:
                    raise InvalidRequest(
                        f"filter on `{field}`: value `{text}` is not JSON ({err}); "
                        'quote strings, e.g. "\\"text\\""'
                    ) from None
                if op in ("in", "not-in") and not isinstance(operand, list):
                    raise InvalidRequest(
                        f"filter on `{field}`: `in`/`not-in` needs a JSON array, got `{text}`"
                    )
                if op == "like" and not isinstance(operand, str):
                    raise InvalidRequest(
                        f"filter on `{field}`: `like` needs a JSON string pattern, got `{text}`"
                    )
            self.conditions.append((field, op, operand))

    def matches(self, record):
        return all(self._holds(record, *c) for c in self.conditions)

    @staticmethod
    def _holds(record, field, op, operand):
        value = lookup(record, field)
        if value is _MISSING:
            value = None
        if op == "is-null":
            return value is None
        if op == "is-not-null":
            return value is not None
        if op == "eq":
            return equal(value, operand)
        if op == "ne":
            return not equal(value, operand)
        if op in ("lt", "le", "gt", "ge"):
            if value is None or operand is None:
                return False
            order = compare(value, operand)
            if order is None:
                return False
            return {"lt": order < 0, "le": order <= 0, "gt": order > 0, "ge": order >= 0}[op]
        if op == "in":
            return any(equal(value, item) for item in operand)
        if op == "not-in":
            return not any(equal(value, item) for item in operand)
        if op == "like":
            if isinstance(value, str):
                return like(value, operand)
            if _is_number(value):
                return like(_number_text(value), operand)
            return False
        return False


def _rank(value):
    if value is _MISSING or value is None:
        return 0
    if isinstance(value, bool):
        return 1
    if _is_number(value):
        return 2
    if isinstance(value, str):
        return 3
    if isinstance(value, list):
        return 4
    return 5


def _sort_order(a, b):
    ra, rb = _rank(a), _rank(b)
    if ra == rb and a is not _MISSING and b is not _MISSING:
        return compare(a, b) or 0
    return (ra > rb) - (ra < rb)


def sort_values(items, keys, data=lambda item: item):
    """Sort (stably) by `keys`, `(field, descending)` pairs, most significant first."""
    if not keys:
        return items

    def order(x, y):
        for field, descending in keys:
            o = _sort_order(lookup(data(x), field), lookup(data(y), field))
            if o:
                return -o if descending else o
        return 0

    return sorted(items, key=functools.cmp_to_key(order))


def project(record, fields):
    """Keep only `fields` of a JSON object (all of them when `fields` is empty)."""
    if not fields or not isinstance(record, dict):
        return record
    kept = {}
    for field in fields:
        value = lookup(record, field)
        if value is not _MISSING:
            kept[field] = value
    return kept


def offset_cursor(offset):
    """An offset as an opaque page cursor (the Rust SDK's form)."""
    return f"offset:{offset}"


def parse_offset_cursor(cursor):
    digits = cursor[len("offset:"):] if cursor.startswith("offset:") else ""
    if not digits.isdigit():
        raise InvalidRequest(f"cursor `{cursor}` was not issued by this connector")
    return int(digits)


def apply(items, filters=(), sort=(), fields=(), page=None, data=lambda item: item):
    """Filter, sort, page and project `items` (whose JSON data `data` gives).

    `page` is None (everything) or `(page_size, offset, cursor)`; the cursor
    wins over the offset. Returns `(kept items with projected data, total
    count, next cursor or None)` as `(item, projected data)` pairs.
    """
    predicate = Predicate(filters)
    matching = [item for item in items if predicate.matches(data(item))]
    matching = sort_values(matching, list(sort), data)
    total = len(matching)
    start, size = 0, None
    if page is not None:
        size, offset, cursor = page
        if size == 0:
            raise InvalidRequest("page size must be at least 1")
        start = parse_offset_cursor(cursor) if cursor is not None else (offset or 0)
    end = total if size is None else min(start + size, total)
    next_cursor = offset_cursor(end) if size is not None and end < total else None
    window = matching[min(start, total):end] if end > start else []
    return [(item, project(data(item), list(fields))) for item in window], total, next_cursor
