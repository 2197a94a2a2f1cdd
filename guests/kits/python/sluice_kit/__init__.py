"""The sluice kit for Python connectors (componentize-py): the Rust SDK's
essentials with the same rules.

- `parse_config(text, schema)`: the config checked against the JSON Schema
  `describe` advertises (types, required, unknown fields, bounds, enums),
  `invalid-config` naming the field;
- `record(data, id=None, metadata=None, timestamp=None)`;
- `apply(req, items)`: filters, sort, fields, offset and cursor pages and the
  total count over in-memory records (`query.py`, tested against the same
  cases as the Rust SDK);
- typed errors: `raise invalid_request("...")`, `not_found`, `unsupported`,
  `denied`, `unavailable`, `rate_limited`, `timeout`, `internal`,
  `invalid_config`;
- `@guarded`: a class decorator that turns an uncaught exception in any
  method into `internal` carrying the traceback, instead of a crash.

The exported resources live in a module named after the interface,
`connector_api.py` (`Session`, `RecordStream`), and `describe` in the app
module's `ConnectorApi` class: that is where componentize-py looks.
"""

import functools
import json
import traceback

from componentize_py_types import Err
from wit_world.imports import sluice_connector_types as types

from . import query

__all__ = [
    "apply", "record", "parse_config", "guarded", "descriptor", "capabilities",
    "invalid_config", "invalid_request", "unsupported", "denied", "not_found",
    "unavailable", "rate_limited", "timeout", "internal", "query", "types",
]


def invalid_config(message):
    return Err(types.ConnectorError_InvalidConfig(message))


def invalid_request(message):
    return Err(types.ConnectorError_InvalidRequest(message))


def unsupported(message):
    return Err(types.ConnectorError_Unsupported(message))


def denied(message):
    return Err(types.ConnectorError_Denied(message))


def not_found(message):
    return Err(types.ConnectorError_NotFound(message))


def unavailable(message):
    return Err(types.ConnectorError_Unavailable(message))


def rate_limited(seconds=None):
    return Err(types.ConnectorError_RateLimited(seconds))


def timeout():
    return Err(types.ConnectorError_Timeout())


def internal(message):
    return Err(types.ConnectorError_Internal(message))


def record(data, id=None, metadata=None, timestamp=None):
    """A record holding `data` (JSON-serialisable), with an optional id,
    metadata (a JSON object) and timestamp (ms since the epoch)."""
    return types.Record(
        id=None if id is None else str(id),
        data=json.dumps(data, separators=(",", ":")),
        metadata=None if metadata is None else json.dumps(metadata, separators=(",", ":")),
        timestamp=timestamp,
    )


def capabilities(streaming=False, pagination=False, filtering=False, sorting=False,
                 aggregation=False, transactions=False, max_page_size=None):
    return types.Capabilities(
        streaming=streaming, pagination=pagination, filtering=filtering, sorting=sorting,
        aggregation=aggregation, transactions=transactions, max_page_size=max_page_size,
    )


def descriptor(name, version, description, config_schema, caps):
    return types.Descriptor(
        name=name, version=version, description=description,
        config_schema=json.dumps(config_schema), capabilities=caps,
    )


_OPS = {
    types.FilterOp.EQ: "eq", types.FilterOp.NE: "ne", types.FilterOp.LT: "lt",
    types.FilterOp.LE: "le", types.FilterOp.GT: "gt", types.FilterOp.GE: "ge",
    types.FilterOp.IN: "in", types.FilterOp.NOT_IN: "not-in", types.FilterOp.LIKE: "like",
    types.FilterOp.IS_NULL: "is-null", types.FilterOp.IS_NOT_NULL: "is-not-null",
}


def filters_of(req):
    """A request's filters as `(field, op, value)` triples for `query`."""
    return [(f.field, _OPS[f.op], f.value) for f in req.filters]


def predicate(req):
    """The request's filters compiled once (for a stream's records)."""
    try:
        return query.Predicate(filters_of(req))
    except query.InvalidRequest as err:
        raise invalid_request(str(err)) from None


def apply(req, items):
    """A fetch response: `items` (JSON objects, or `(id, data)` pairs)
    filtered, sorted, paged and projected as `req` asks, with the total."""
    pairs = [item if isinstance(item, tuple) else (None, item) for item in items]
    page = None
    if req.pagination is not None:
        p = req.pagination
        page = (p.page_size, p.offset, p.cursor)
    sort = [(s.field, s.direction == types.SortDirection.DESC) for s in req.sort]
    try:
        kept, total, next_cursor = query.apply(
            pairs, filters_of(req), sort, req.fields, page, data=lambda pair: pair[1]
        )
    except query.InvalidRequest as err:
        raise invalid_request(str(err)) from None
    return types.FetchResponse(
        records=[record(data, id=pair[0]) for pair, data in kept],
        total_count=total,
        next_cursor=next_cursor,
    )


_TYPES = {
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool)
    or isinstance(v, float) and v.is_integer(),
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "null": lambda v: v is None,
}


def _check(value, schema, where):
    kinds = schema.get("type")
    if kinds is not None:
        kinds = kinds if isinstance(kinds, list) else [kinds]
        if not any(_TYPES[k](value) for k in kinds):
            raise invalid_config(f"field `{where}`: expected {' or '.join(kinds)}, got {json.dumps(value)}")
    if "enum" in schema and value not in schema["enum"]:
        raise invalid_config(f"field `{where}`: one of {json.dumps(schema['enum'])}")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if "minimum" in schema and value < schema["minimum"]:
            raise invalid_config(f"field `{where}`: at least {schema['minimum']}")
        if "maximum" in schema and value > schema["maximum"]:
            raise invalid_config(f"field `{where}`: at most {schema['maximum']}")
    if isinstance(value, dict) and "properties" in schema:
        _check_object(value, schema, where + ".")


def _check_object(value, schema, prefix):
    properties = schema.get("properties", {})
    for name in schema.get("required", []):
        if name not in value:
            raise invalid_config(f"field `{prefix}{name}`: missing")
    for name, item in value.items():
        if name in properties:
            _check(item, properties[name], prefix + name)
        elif schema.get("additionalProperties") is False:
            known = ", ".join(properties) or "none"
            raise invalid_config(f"field `{prefix}{name}`: unknown field (known: {known})")


def parse_config(text, schema):
    """The config `text` as a dict, checked against `schema` (the JSON
    Schema `describe` gives): `invalid-config` naming the field otherwise."""
    try:
        value = json.loads(text or "{}")
    except ValueError as err:
        raise invalid_config(f"the config is not JSON ({err})") from None
    if not isinstance(value, dict):
        raise invalid_config("the config must be a JSON object")
    _check_object(value, schema, "")
    return value


def _guard(method):
    @functools.wraps(method)
    def wrapper(*args, **kwargs):
        try:
            return method(*args, **kwargs)
        except Err:
            raise
        except Exception:
            text = traceback.format_exc()
            raise internal(text[-4000:]) from None

    return wrapper


def guarded(cls):
    """Wrap every public method of `cls` (classmethods too): an uncaught
    exception becomes `internal` with its traceback."""
    for name, member in list(vars(cls).items()):
        if name.startswith("_"):
            continue
        if isinstance(member, classmethod):
            setattr(cls, name, classmethod(_guard(member.__func__)))
        elif isinstance(member, staticmethod):
            setattr(cls, name, staticmethod(_guard(member.__func__)))
        elif callable(member):
            setattr(cls, name, _guard(member))
    return cls
