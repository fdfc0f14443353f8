"""Sends a stream of dated events with the official posthog-python SDK:
events of 50 people spread over DAYS days from 2024-03-01, pageviews with
a browser, signups and purchases, in an order fixed by SEED. COUNT events,
or with COUNT 0 one every few milliseconds until standard input closes:
the ClickHouse chores' end-to-end tests keep it sending for as long as a
chore runs, and past its end.

Usage: python_days.py URL TOKEN COUNT DAYS SEED. Prints the number of
events sent and exits non-zero if the SDK reported a delivery error.
"""

import random
import sys
import threading
import time
from datetime import datetime, timedelta, timezone

from posthog import Posthog

url, token = sys.argv[1], sys.argv[2]
count, days, seed = int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
errors = []
stdin_closed = threading.Event()


def on_error(error, items):
    errors.append(f"{error!r} for {len(items)} items")


def await_stdin_close():
    sys.stdin.read()
    stdin_closed.set()


if count == 0:
    threading.Thread(target=await_stdin_close, daemon=True).start()

client = Posthog(token, host=url, sync_mode=True, on_error=on_error, max_retries=0)
pick = random.Random(seed)
start = datetime(2024, 3, 1, tzinfo=timezone.utc)
sent = 0
while (sent < count) if count else not stdin_closed.is_set():
    person = f"user-{pick.randrange(50)}"
    when = start + timedelta(seconds=pick.randrange(days * 86400))
    event = pick.choice(["$pageview", "$pageview", "$pageview", "signup", "purchase"])
    properties = {"$browser": pick.choice(["Chrome", "Firefox", "Safari"])}
    if event == "purchase":
        properties["amount"] = pick.randrange(1, 100)
    client.capture(event, distinct_id=person, properties=properties, timestamp=when)
    sent += 1
    if count == 0:
        time.sleep(0.005)
client.flush()
if errors:
    print("\n".join(errors), file=sys.stderr)
    sys.exit(1)
print(sent)
