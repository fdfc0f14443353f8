"""Identifies, aliases, sets properties and groups with the official
posthog-python SDK against a running Warren.

Usage: python_persons.py URL TOKEN. Prints one JSON object per event sent,
{"uuid", "event", "distinct_id"}, and exits non-zero if the SDK reported a
delivery error.
"""

import json
import sys

from posthog import Posthog

url, token = sys.argv[1], sys.argv[2]
errors = []
sent = []


def on_error(error, items):
    errors.append(f"{error!r} for {len(items)} items")


client = Posthog(token, host=url, sync_mode=True, on_error=on_error, max_retries=0)


def note(uuid, event, distinct_id):
    sent.append({"uuid": str(uuid), "event": event, "distinct_id": distinct_id})


note(client.capture("$pageview", distinct_id="anon-1", properties={"$browser": "Firefox"}), "$pageview", "anon-1")
note(client.set(distinct_id="anon-1", properties={"plan": "free"}), "$set", "anon-1")
note(
    client.capture(
        "$identify",
        distinct_id="user-1",
        properties={"$anon_distinct_id": "anon-1", "$set": {"email": "one@example.com"}},
    ),
    "$identify",
    "user-1",
)
note(client.alias(previous_id="user-1", distinct_id="user-1-alias"), "$create_alias", "user-1")
note(client.set(distinct_id="user-1-alias", properties={"plan": "pro"}), "$set", "user-1-alias")
note(client.set_once(distinct_id="user-1", properties={"plan": "ignored", "first": "yes"}), "$set_once", "user-1")
note(client.group_identify("company", "acme", {"name": "Acme"}, distinct_id="user-1"), "$groupidentify", "user-1")
note(client.capture("purchase", distinct_id="user-1", properties={"amount": 3}, groups={"company": "acme"}), "purchase", "user-1")
note(
    client.capture("bot_ping", distinct_id="bot-1", properties={"$process_person_profile": False}),
    "bot_ping",
    "bot-1",
)
client.flush()
client.shutdown()
for line in sent:
    print(json.dumps(line))
if errors:
    print("\n".join(errors), file=sys.stderr)
    sys.exit(1)
