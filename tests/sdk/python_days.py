"""Sends a stream of dated events with the official posthog-python SDK:
COUNT events of 50 people spread over DAYS days from 2024-03-01, pageviews
with a browser, signups and purchases, in an order fixed by SEED. The
reshard end-to-end test sends one stream before the reshard and another
while it runs.

Usage: python_days.py URL TOKEN COUNT DAYS SEED. Prints the number of
events sent and exits non-zero if the SDK reported a delivery error.
"""

import random
import sys
from datetime import datetime, timedelta, timezone

from posthog import Posthog

url, token = sys.argv[1], sys.argv[2]
count, days, seed = int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
errors = []


def on_error(error, items):
    errors.append(f"{error!r} for {len(items)} items")


client = Posthog(token, host=url, sync_mode=True, on_error=on_error, max_retries=0)
pick = random.Random(seed)
start = datetime(2024, 3, 1, tzinfo=timezone.utc)
for _ in range(count):
    person = f"user-{pick.randrange(50)}"
    when = start + timedelta(seconds=pick.randrange(days * 86400))
    event = pick.choice(["$pageview", "$pageview", "$pageview", "signup", "purchase"])
    properties = {"$browser": pick.choice(["Chrome", "Firefox", "Safari"])}
    if event == "purchase":
        properties["amount"] = pick.randrange(1, 100)
    client.capture(event, distinct_id=person, properties=properties, timestamp=when)
client.flush()
if errors:
    print("\n".join(errors), file=sys.stderr)
    sys.exit(1)
print(count)
