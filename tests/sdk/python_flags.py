"""Evaluates feature flags against a running Warren with the official posthog-python SDK.

Usage: python_flags.py '<json>' (or the JSON on stdin), where the JSON is
{"host", "token", "personal_api_key", "distinct_ids", "person_properties",
 "groups"?, "group_properties"?, "flags"}.

Two clients: "remote" has no secret key, so every call is a POST /flags/?v=4;
"local" has the secret key, loads GET /flags/definitions once and evaluates
with only_evaluate_locally=True. Prints one JSON object with each client's
get_feature_flag / get_feature_flag_payload / get_all_flags results, the
number of definitions the local client loaded, and the SDK's own error and
warning log lines. Exits non-zero if the SDK reported any error.
"""

import json
import logging
import sys
import warnings

from posthog import Posthog

# Messages the SDK logs about the flags themselves rather than about a failure.
BENIGN = (
    "without group names passed in",
    "experience continuity enabled",
    "use something local evaluation",
)

config = json.loads(sys.argv[1] if len(sys.argv) > 1 else sys.stdin.read())
errors = []
warnings_seen = []


class Collect(logging.Handler):
    """The SDK logs failed requests instead of raising: keep every warning and error."""

    def emit(self, record):
        message = record.getMessage()
        benign = record.levelno < logging.ERROR and any(b in message for b in BENIGN)
        (warnings_seen if benign else errors).append(message)


logging.getLogger("posthog").addHandler(Collect(logging.WARNING))
warnings.simplefilter("ignore", DeprecationWarning)


def client(**options):
    return Posthog(
        config["token"],
        host=config["host"],
        send=False,
        sync_mode=True,
        disable_geoip=True,
        feature_flags_request_timeout_seconds=3,
        feature_flags_request_max_retries=0,
        poll_interval=3600,
        **options,
    )


def context(distinct_id):
    groups = (config.get("groups") or {}).get(distinct_id) or {}
    group_properties = {
        group_type: ((config.get("group_properties") or {}).get(group_type) or {}).get(str(key)) or {}
        for group_type, key in groups.items()
    }
    return {
        "person_properties": (config.get("person_properties") or {}).get(distinct_id) or {},
        "groups": groups,
        "group_properties": group_properties,
    }


def evaluate(c, only_local):
    values, payloads, all_flags = {}, {}, {}
    for distinct_id in config["distinct_ids"]:
        ctx = context(distinct_id)
        values[distinct_id], payloads[distinct_id] = {}, {}
        for key in config["flags"]:
            try:
                values[distinct_id][key] = c.get_feature_flag(
                    key, distinct_id, only_evaluate_locally=only_local, send_feature_flag_events=False, **ctx
                )
                payloads[distinct_id][key] = c.get_feature_flag_payload(
                    key, distinct_id, only_evaluate_locally=only_local, **ctx
                )
            except Exception as e:
                errors.append(f"{key} for {distinct_id}: {e!r}")
                values[distinct_id][key] = payloads[distinct_id][key] = None
        all_flags[distinct_id] = c.get_all_flags(distinct_id, only_evaluate_locally=only_local, **ctx)
    return values, payloads, all_flags


remote = client()
local = client(secret_key=config["personal_api_key"])
local.load_feature_flags()
if local.feature_flags is None:
    errors.append("local client did not load flag definitions")

out = {"definitions_loaded": len(local.feature_flags or [])}
out["remote"], out["remote_payloads"], out["remote_all"] = evaluate(remote, False)
out["local"], out["local_payloads"], out["local_all"] = evaluate(local, True)
remote.shutdown()
local.shutdown()
out["errors"], out["warnings"] = errors, warnings_seen

print(json.dumps(out))
if errors:
    print("posthog-python reported errors:\n" + "\n".join(errors), file=sys.stderr)
    sys.exit(1)
