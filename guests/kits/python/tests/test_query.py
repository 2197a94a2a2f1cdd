"""The Python kit's query rules against the cases the Rust SDK is tested
with too (guests/kits/query-cases.json). Runs natively:
`python3 -m unittest discover -s guests/kits/python/tests`."""

import json
import os
import sys
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "sluice_kit"))

import query  # noqa: E402  (the pure module, without the WIT bindings)

CASES = os.path.join(HERE, "..", "..", "query-cases.json")


class SharedCases(unittest.TestCase):
    def test_every_case_answers_as_the_rust_sdk_does(self):
        with open(CASES) as f:
            suite = json.load(f)
        items = [(r["id"], r["data"]) for r in suite["records"]]
        for case in suite["cases"]:
            with self.subTest(case=case):
                page = tuple(case["page"]) if "page" in case else None
                args = (
                    items,
                    [tuple(f) for f in case.get("filters", [])],
                    [tuple(s) for s in case.get("sort", [])],
                    case.get("fields", []),
                    page,
                )
                if "error" in case:
                    with self.assertRaises(query.InvalidRequest) as raised:
                        query.apply(*args, data=lambda item: item[1])
                    self.assertIn(case["error"], str(raised.exception))
                    continue
                kept, total, next_cursor = query.apply(*args, data=lambda item: item[1])
                self.assertEqual([item[0] for item, _ in kept], case["ids"])
                if "total" in case:
                    self.assertEqual(total, case["total"])
                if "next_cursor" in case:
                    self.assertEqual(next_cursor, case["next_cursor"])
                if "data" in case:
                    self.assertEqual([data for _, data in kept], case["data"])


if __name__ == "__main__":
    unittest.main()
