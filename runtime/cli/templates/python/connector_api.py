"""The resources of the `connector-api` interface: `Session` and `RecordStream`."""

import json

from wit_world.exports import connector_api

import sluice_kit as kit
from app import CONFIG_SCHEMA

NUMBERS = "numbers"


def number(n):
    """The record of `n`: `(id, data)`."""
    return (str(n), {"n": n, "square": n * n, "parity": "even" if n % 2 == 0 else "odd"})


def check(resource):
    if resource != NUMBERS:
        raise kit.not_found(f"no resource `{resource}` (there is `{NUMBERS}`)")


@kit.guarded
class Session(connector_api.Session):
    @classmethod
    def open(cls, config):
        settings = kit.parse_config(config, CONFIG_SCHEMA)  # invalid-config names the field
        session = cls()
        session.up_to = int(settings["up_to"])
        return session

    def health_check(self):
        return None

    def discover(self):
        schema = {
            "type": "object",
            "properties": {
                "n": {"type": "integer"},
                "square": {"type": "integer"},
                "parity": {"enum": ["even", "odd"]},
            },
        }
        return [kit.types.ResourceInfo(name=NUMBERS, schema=json.dumps(schema))]

    def fetch(self, req):
        check(req.resource)
        if req.pagination is not None and req.pagination.page_size > 1000:
            raise kit.invalid_request("a page holds at most 1000 records")
        # Filters, sort, fields and pages, by the rules every connector shares.
        return kit.apply(req, (number(n) for n in range(1, self.up_to + 1)))

    def stream(self, req, checkpoint):
        check(req.resource)
        if req.sort:
            raise kit.unsupported("sort on a stream: it comes in order of `n`")
        after = 0
        if checkpoint is not None:
            if not checkpoint.isdigit():
                raise kit.invalid_request(f"checkpoint `{checkpoint}`: a number")
            after = int(checkpoint)
        return RecordStream(after + 1, self.up_to, kit.predicate(req), list(req.fields))

    def execute(self, req):
        check(req.resource)
        if req.operation != "sum":
            raise kit.unsupported(f"operation `{req.operation}` (there is `sum`)")
        # `sum` adds up the `n` of the records it is given.
        total = 0
        for i, record in enumerate(req.records):
            try:
                data = json.loads(record.data)
            except ValueError as err:
                raise kit.invalid_request(f"record {i}: not JSON ({err})") from None
            n = data.get("n") if isinstance(data, dict) else None
            if not isinstance(n, int) or isinstance(n, bool):
                raise kit.invalid_request(f"record {i}: no integer `n`")
            total += n
        return kit.types.ExecuteResponse(affected=len(req.records), records=[kit.record({"sum": total})])


@kit.guarded
class RecordStream(connector_api.RecordStream):
    """The numbers after a checkpoint, `max` (at most) a batch; the
    checkpoint is the last number delivered."""

    def __init__(self, first, up_to, predicate, fields):
        self.next_n = first
        self.up_to = up_to
        self.predicate = predicate
        self.fields = fields

    def next(self, max):
        if self.next_n > self.up_to:
            return None
        size = max if max > 0 else 1  # `max` is the WIT parameter's name
        last = min(self.next_n + size - 1, self.up_to)
        records = []
        for n in range(self.next_n, last + 1):
            id, data = number(n)
            if self.predicate.matches(data):
                records.append(kit.record(kit.query.project(data, self.fields), id=id))
        self.next_n = last + 1
        return kit.types.Batch(records=records, checkpoint=str(last))

    def ack(self, ids):
        return None

    def nack(self, ids):
        return None
