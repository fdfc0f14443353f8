"""Sends a small, dated product story with the official posthog-python SDK:
three people over three days, browsing, signing up, buying, one of them
anonymous until they identify. The query end-to-end test asks Warren for
every insight kind over it.

Usage: python_insights.py URL TOKEN [--with-merge]. With --with-merge, a
fourth person browses anonymously and as a known user before identifying,
which merges the two persons. Prints the number of events sent and exits
non-zero if the SDK reported a delivery error.
"""

import sys
from datetime import datetime, timezone

from posthog import Posthog

url, token = sys.argv[1], sys.argv[2]
errors = []


def on_error(error, items):
    errors.append(f"{error!r} for {len(items)} items")


client = Posthog(token, host=url, sync_mode=True, on_error=on_error, max_retries=0)
sent = 0


def at(day, hour, minute=0):
    return datetime(2024, 3, day, hour, minute, tzinfo=timezone.utc)


def capture(event, distinct_id, when, **properties):
    global sent
    client.capture(event, distinct_id=distinct_id, properties=properties, timestamp=when)
    sent += 1


capture("$pageview", "u1", at(1, 12), **{"$browser": "Chrome", "$current_url": "/home"})
capture("signup", "u1", at(1, 12, 5))
capture("$pageview", "u1", at(2, 12), **{"$browser": "Chrome", "$current_url": "/pricing"})
capture("purchase", "u1", at(2, 12, 10), amount=10)
capture("$pageview", "u2", at(1, 13), **{"$browser": "Firefox", "$current_url": "/home"})
capture("$pageview", "u2", at(1, 13, 5), **{"$browser": "Firefox", "$current_url": "/docs"})
capture("$pageview", "u2", at(3, 13), **{"$browser": "Firefox", "$current_url": "/pricing"})
capture("$pageview", "anon-3", at(2, 9), **{"$browser": "Safari", "$current_url": "/home"})
capture("$identify", "u3", at(2, 9, 1), **{"$anon_distinct_id": "anon-3", "$set": {"email": "three@example.com"}})
capture("signup", "u3", at(2, 9, 2))

if "--with-merge" in sys.argv[3:]:
    capture("$pageview", "anon-4", at(1, 15), **{"$browser": "Safari", "$current_url": "/home"})
    capture("$pageview", "u4", at(2, 15), **{"$browser": "Chrome", "$current_url": "/home"})
    capture("$identify", "u4", at(2, 15, 1), **{"$anon_distinct_id": "anon-4", "$set": {"email": "four@example.com"}})
    capture("$pageview", "u4", at(3, 15), **{"$browser": "Chrome", "$current_url": "/docs"})

client.flush()
client.shutdown()
if errors:
    print("\n".join(errors), file=sys.stderr)
    sys.exit(1)
print(sent)
