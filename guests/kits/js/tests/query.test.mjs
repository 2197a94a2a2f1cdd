// The JavaScript kit's query rules against the cases the Rust SDK and the
// Python kit are tested with too (guests/kits/query-cases.json).
// Runs natively: `node --test guests/kits/js/tests`.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";

import { apply, InvalidRequest } from "../sluice_kit/query.js";

const suite = JSON.parse(readFileSync(new URL("../../query-cases.json", import.meta.url), "utf8"));
const items = suite.records.map((r) => [r.id, r.data]);

test("every case answers as the Rust SDK does", () => {
  for (const c of suite.cases) {
    const request = { filters: c.filters ?? [], sort: c.sort ?? [], fields: c.fields ?? [], page: c.page ?? null };
    const label = JSON.stringify(c);
    if (c.error !== undefined) {
      assert.throws(() => apply(items, request, (item) => item[1]), (err) => {
        assert.ok(err instanceof InvalidRequest, label);
        assert.ok(err.message.includes(c.error), `${label}: ${err.message}`);
        return true;
      });
      continue;
    }
    const { kept, total, nextCursor } = apply(items, request, (item) => item[1]);
    assert.deepEqual(kept.map(([item]) => item[0]), c.ids, label);
    if (c.total !== undefined) assert.equal(total, c.total, label);
    if (c.next_cursor !== undefined) assert.equal(nextCursor, c.next_cursor, label);
    if (c.data !== undefined) assert.deepEqual(kept.map(([, data]) => data), c.data, label);
  }
});
