"""Sends events to a running Warren with posthog-python's batching client
configured to retry, as applications run it: a refused upload (a 503, a
connection closed) is sent again with the SDK's backoff.

Usage: python_retrying.py URL TOKEN COUNT. Prints one JSON object per event
sent (what the test then expects to find in Warren's event log) and exits
non-zero if the SDK gave up on any.
"""

import json
import sys
from datetime import datetime, timedelta, timezone

from posthog import Posthog

url, token, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
errors = []


def on_error(error, items):
    errors.append(f"{error!r} for {len(items)} items")


client = Posthog(token, host=url, gzip=True, flush_at=25, max_retries=10, on_error=on_error)
base = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(minutes=1)
expected = []
for i in range(count):
    ts = base + timedelta(milliseconds=10 * i)
    distinct_id = f"py-retry-{i % 5}"
    props = {"i": i}
    uuid = client.capture("retried", distinct_id=distinct_id, properties=props, timestamp=ts)
    expected.append(
        {
            "uuid": str(uuid),
            "event": "retried",
            "distinct_id": distinct_id,
            "timestamp": ts.isoformat(),
            "fields": {"properties": props},
        }
    )
client.flush()
client.shutdown()

for item in expected:
    print(json.dumps(item))
if errors:
    print("\n".join(errors), file=sys.stderr)
    sys.exit(1)
