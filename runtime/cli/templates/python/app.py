"""{{name}}: a sluice connector over one in-memory resource, `numbers` (1 to
`up_to`, each with its square and parity). `describe` lives here, in
`ConnectorApi`; the session and stream resources in `connector_api.py`
(componentize-py looks for them in a module named after the interface)."""

from wit_world import exports

import sluice_kit as kit

# The config `open` takes: describe advertises it, parse_config enforces it.
CONFIG_SCHEMA = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "properties": {
        "up_to": {
            "description": "The last number of `numbers` (1 to 1000000).",
            "type": "integer",
            "minimum": 1,
            "maximum": 1000000,
        }
    },
    "required": ["up_to"],
    "additionalProperties": False,
}


class ConnectorApi(exports.ConnectorApi):
    def describe(self):
        return kit.descriptor(
            "{{name}}",
            "0.1.0",
            "Numbers from 1 to `up_to`, with their squares and parity",
            CONFIG_SCHEMA,
            kit.capabilities(streaming=True, pagination=True, filtering=True, sorting=True,
                             max_page_size=1000),
        )
