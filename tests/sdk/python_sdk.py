"""Sends events to a running Warren with the official posthog-python SDK.

Usage: python_sdk.py URL TOKEN. Prints one JSON object per event sent (what
the test then expects to find in Warren's event log) and exits non-zero if
the SDK reported any delivery error.
"""

import json
import sys
from datetime import datetime, timedelta, timezone

from posthog import Posthog

url, token = sys.argv[1], sys.argv[2]
errors = []
expected = []


def on_error(error, items):
    errors.append(f"{error!r} for {len(items)} items")


def note(uuid, event, distinct_id, timestamp, fields):
    """`fields`: top-level fields the stored event must contain (objects as subsets)."""
    expected.append(
        {
            "uuid": str(uuid),
            "event": event,
            "distinct_id": distinct_id,
            "timestamp": timestamp.isoformat(),
            "fields": fields,
        }
    )


base = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(minutes=5)

# Synchronous client: one request per call.
sync = Posthog(token, host=url, sync_mode=True, on_error=on_error, max_retries=0)
ts = base
props = {"plan": "pro", "seats": 3, "nested": {"a": [1, 2, {"b": None}]}, "unicode": "héllo ✓"}
uuid = sync.capture("signed_up", distinct_id="py-user-1", properties=props, timestamp=ts)
note(uuid, "signed_up", "py-user-1", ts, {"properties": props})

ts = base + timedelta(seconds=1)
uuid = sync.set(distinct_id="py-user-1", properties={"email": "one@example.com"}, timestamp=ts)
note(uuid, "$set", "py-user-1", ts, {"$set": {"email": "one@example.com"}})

ts = base + timedelta(seconds=2)
uuid = sync.set_once(distinct_id="py-user-1", properties={"first_seen": "today"}, timestamp=ts)
note(uuid, "$set_once", "py-user-1", ts, {"$set_once": {"first_seen": "today"}})

ts = base + timedelta(seconds=3)
uuid = sync.alias(previous_id="py-anon-1", distinct_id="py-user-1", timestamp=ts)
note(uuid, "$create_alias", "py-anon-1", ts, {"properties": {"alias": "py-user-1"}})

ts = base + timedelta(seconds=4)
uuid = sync.group_identify("company", "acme", {"name": "Acme"}, timestamp=ts, distinct_id="py-user-1")
note(
    uuid,
    "$groupidentify",
    "py-user-1",
    ts,
    {"properties": {"$group_type": "company", "$group_key": "acme", "$group_set": {"name": "Acme"}}},
)

# Batching client: the SDK's own queue, gzip-compressed batches.
batching = Posthog(token, host=url, gzip=True, flush_at=50, on_error=on_error, max_retries=0)
for i in range(120):
    ts = base + timedelta(seconds=10 + i)
    distinct_id = f"py-batch-{i % 7}"
    props = {"i": i, "path": f"/page/{i}"}
    uuid = batching.capture("$pageview", distinct_id=distinct_id, properties=props, timestamp=ts)
    note(uuid, "$pageview", distinct_id, ts, {"properties": props})
batching.flush()
batching.shutdown()
sync.shutdown()

for item in expected:
    print(json.dumps(item))
if errors:
    print("\n".join(errors), file=sys.stderr)
    sys.exit(1)
