#!/bin/sh
# A tour of the sluice HTTP API. Start the server first with `make run`
# (it serves http://127.0.0.1:8080 with the admin token `dev-admin-token`).
set -e
URL=${URL:-http://127.0.0.1:8080}
ADMIN=${SLUICE_ADMIN_TOKEN:-dev-admin-token}
field() { python3 -c "import json, sys; print(json.load(sys.stdin)['$1'])"; }

# 1. The admin creates a tenant that may mount directories of its own file root, and a token for it.
TENANT=$(curl -sf -X POST "$URL/v1/tenants" -H "authorization: Bearer $ADMIN" \
  -d '{"name": "demo", "ceiling": {"files": true}}' | field id)
TOKEN=$(curl -sf -X POST "$URL/v1/tenants/$TENANT/tokens" -H "authorization: Bearer $ADMIN" | field token)

# 2. The tenant uploads a connector; the same bytes always get the same id (their sha256).
CONNECTOR=$(curl -sf -X POST "$URL/v1/connectors" -H "authorization: Bearer $TOKEN" \
  --data-binary @guests/target/wasm32-wasip2/release/sluice_file.wasm | field id)

# 3. It uploads data into its file root and creates an instance that mounts it read-only.
for file in examples/data/*; do
  curl -sf -X PUT "$URL/v1/files/data/$(basename "$file")" -H "authorization: Bearer $TOKEN" \
    --data-binary @"$file" >/dev/null
done
INSTANCE=$(curl -sf -X POST "$URL/v1/instances" -H "authorization: Bearer $TOKEN" \
  -d '{"connector": "'"$CONNECTOR"'", "config": {"root": "/data", "csv": {"infer_types": true}},
       "grants": {"files": [{"host": "data", "guest": "/data", "mode": "ro"}]}}' | field id)

# 4. Fetch a filtered, sorted page (JSON).
curl -sf -X POST "$URL/v1/instances/$INSTANCE/fetch" -H "authorization: Bearer $TOKEN" \
  -d '{"resource": "people.csv", "filters": [{"field": "age", "op": "gt", "value": 80}],
       "sort": [{"field": "age", "direction": "desc"}], "fields": ["name", "age"]}'
echo

# 5. Stream NDJSON: {"record": ...} lines, then a {"checkpoint": ...} line per batch (pass one back as "checkpoint" to resume).
curl -sfN -X POST "$URL/v1/instances/$INSTANCE/stream" -H "authorization: Bearer $TOKEN" \
  -d '{"resource": "people.ndjson", "batch_size": 2}'
