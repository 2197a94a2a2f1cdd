// {{name}}: a sluice connector over one in-memory resource, `numbers` (1 to
// `up_to`, each with its square and parity). The exported interface
// `connector-api` is the object `connectorApi`: `describe` and the two
// resources, `Session` and `RecordStream`.

import * as kit from "./sluice_kit/index.js";

// The config `open` takes: describe advertises it, parseConfig enforces it.
const CONFIG_SCHEMA = {
  $schema: "https://json-schema.org/draft/2020-12/schema",
  type: "object",
  properties: {
    up_to: {
      description: "The last number of `numbers` (1 to 1000000).",
      type: "integer",
      minimum: 1,
      maximum: 1000000,
    },
  },
  required: ["up_to"],
  additionalProperties: false,
};

const NUMBERS = "numbers";

/** The record of `n`: `[id, data]`. */
const number = (n) => [String(n), { n, square: n * n, parity: n % 2 === 0 ? "even" : "odd" }];

function check(resource) {
  if (resource !== NUMBERS) throw kit.notFound(`no resource \`${resource}\` (there is \`${NUMBERS}\`)`);
}

class Session {
  constructor(upTo) {
    this.upTo = upTo;
  }

  static open(config) {
    const settings = kit.parseConfig(config, CONFIG_SCHEMA); // invalid-config names the field
    return new Session(settings.up_to);
  }

  healthCheck() {}

  discover() {
    const schema = {
      type: "object",
      properties: { n: { type: "integer" }, square: { type: "integer" }, parity: { enum: ["even", "odd"] } },
    };
    return [{ name: NUMBERS, schema: JSON.stringify(schema) }];
  }

  fetch(req) {
    check(req.resource);
    if (req.pagination != null && req.pagination.pageSize > 1000) {
      throw kit.invalidRequest("a page holds at most 1000 records");
    }
    // Filters, sort, fields and pages, by the rules every connector shares.
    const items = [];
    for (let n = 1; n <= this.upTo; n++) items.push(number(n));
    return kit.apply(req, items);
  }

  stream(req, checkpoint) {
    check(req.resource);
    if (req.sort.length > 0) throw kit.unsupported("sort on a stream: it comes in order of `n`");
    let after = 0;
    if (checkpoint != null) {
      if (!/^\d+$/.test(checkpoint)) throw kit.invalidRequest(`checkpoint \`${checkpoint}\`: a number`);
      after = Number(checkpoint);
    }
    return new RecordStream(after + 1, this.upTo, kit.predicate(req), req.fields);
  }

  execute(req) {
    check(req.resource);
    if (req.operation !== "sum") throw kit.unsupported(`operation \`${req.operation}\` (there is \`sum\`)`);
    // `sum` adds up the `n` of the records it is given.
    let total = 0;
    req.records.forEach((record, i) => {
      let data;
      try {
        data = JSON.parse(record.data);
      } catch (err) {
        throw kit.invalidRequest(`record ${i}: not JSON (${err.message})`);
      }
      if (!Number.isInteger(data?.n)) throw kit.invalidRequest(`record ${i}: no integer \`n\``);
      total += data.n;
    });
    return { affected: BigInt(req.records.length), records: [kit.record({ sum: total })] };
  }
}

/** The numbers after a checkpoint, `max` (at most) a batch; the checkpoint
 *  is the last number delivered. */
class RecordStream {
  constructor(first, upTo, predicate, fields) {
    this.nextN = first;
    this.upTo = upTo;
    this.predicate = predicate;
    this.fields = fields;
  }

  next(max) {
    if (this.nextN > this.upTo) return undefined;
    const last = Math.min(this.nextN + Math.max(max, 1) - 1, this.upTo);
    const records = [];
    for (let n = this.nextN; n <= last; n++) {
      const [id, data] = number(n);
      if (this.predicate.matches(data)) records.push(kit.record(kit.query.project(data, this.fields), { id }));
    }
    this.nextN = last + 1;
    return { records, checkpoint: String(last) };
  }

  ack(ids) {}

  nack(ids) {}
}

export const connectorApi = {
  describe() {
    return kit.descriptor(
      "{{name}}",
      "0.1.0",
      "Numbers from 1 to `up_to`, with their squares and parity",
      CONFIG_SCHEMA,
      kit.capabilities({ streaming: true, pagination: true, filtering: true, sorting: true, maxPageSize: 1000 }),
    );
  },
  // An uncaught exception in any method becomes `internal` with its stack.
  Session: kit.guarded(Session),
  RecordStream: kit.guarded(RecordStream),
};
