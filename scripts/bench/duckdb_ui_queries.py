"""The DuckDB column of `warren bench ui`: the dashboard's event lists as
SQL over the Parquet files of Warren's Delta events table — the newest 100
events of a day, the same filtered by name and a property, and one
person's newest 100 events.

Usage: duckdb_ui_queries.py TABLE_DIR RUNS PERSON_UUID AFTER_ISO
Prints JSON: {name: median seconds}.
"""

import json
import statistics
import sys
import time

import duckdb
from deltalake import DeltaTable

table_dir, runs, person, after = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
files = DeltaTable(table_dir).file_uris()
db = duckdb.connect()
db.execute("SET TimeZone = 'UTC'")
db.execute(f"CREATE VIEW events AS SELECT * FROM read_parquet({files!r}, union_by_name = true)")

COLUMNS = "uuid, event, timestamp, distinct_id, person_id, properties"
QUERIES = {
    "events_24h": (
        f"SELECT {COLUMNS} FROM events WHERE team_id = 1 AND timestamp >= CAST(? AS TIMESTAMPTZ) "
        "ORDER BY timestamp DESC, uuid DESC LIMIT 101",
        [after],
    ),
    "events_filtered": (
        f"SELECT {COLUMNS} FROM events WHERE team_id = 1 AND timestamp >= CAST(? AS TIMESTAMPTZ) "
        "AND event = '$pageview' AND json_extract_string(properties, '$.\"$browser\"') = 'Firefox' "
        "ORDER BY timestamp DESC, uuid DESC LIMIT 101",
        [after],
    ),
    "person_events": (
        f"SELECT {COLUMNS} FROM events WHERE team_id = 1 AND person_id = ? "
        "AND timestamp >= TIMESTAMPTZ '2024-01-01 00:00:00+00' ORDER BY timestamp DESC, uuid DESC LIMIT 101",
        [person],
    ),
}

out = {}
for name, (sql, params) in QUERIES.items():
    times = []
    for run in range(runs + 1):
        started = time.perf_counter()
        db.execute(sql, params).fetchall()
        if run > 0:
            times.append(time.perf_counter() - started)
    out[name] = statistics.median(times)
print(json.dumps(out))
