"""The DuckDB column of `warren bench query`: the benchmark's insights as
equivalent SQL over the Parquet files of Warren's Delta events table.

Usage: duckdb_queries.py TABLE_DIR RUNS [EXPORT_TSV]
Prints JSON: {"queries": {name: {"median_s", "rows"}}, "peak_rss_mb"}.
With EXPORT_TSV, first writes the events as tab-separated values in the
column order of the ClickHouse table the bench loads, and exits.
"""

import json
import resource
import statistics
import sys
import time

import duckdb
from deltalake import DeltaTable

table_dir, runs = sys.argv[1], int(sys.argv[2])
files = DeltaTable(table_dir).file_uris()
db = duckdb.connect()
db.execute("SET TimeZone = 'UTC'")
db.execute(f"CREATE VIEW events AS SELECT * FROM read_parquet({files!r}, union_by_name = true)")

if len(sys.argv) > 3:
    # Compact JSON without tabs or newlines is what ClickHouse 18.16's
    # visitParamExtract* reads; properties are stored compact already.
    db.execute(
        f"""COPY (SELECT uuid, event, replace(replace(properties, '\\', '\\\\'), '\t', ' '), strftime(timestamp, '%Y-%m-%d %H:%M:%S'),
                         team_id, distinct_id, person_id, strftime(person_created_at, '%Y-%m-%d %H:%M:%S')
                  FROM events)
            TO '{sys.argv[3]}' (FORMAT csv, DELIMITER '\t', HEADER false, QUOTE '')"""
    )
    sys.exit(0)

QUERIES = {
    "trends_dau_by_browser": """
        SELECT date_trunc('day', timestamp) AS day, json_extract_string(properties, '$."$browser"') AS browser,
               count(DISTINCT person_id) AS persons
        FROM events
        WHERE team_id = 1 AND event = '$pageview'
          AND timestamp >= TIMESTAMPTZ '2024-01-31 00:00:00+00' AND timestamp < TIMESTAMPTZ '2024-03-01 00:00:00+00'
        GROUP BY day, browser""",
    "funnel_3_steps_14d": """
        WITH p AS (SELECT person_id, timestamp AS t FROM events WHERE team_id = 1 AND event = '$pageview'
                     AND timestamp >= TIMESTAMPTZ '2024-01-01 00:00:00+00' AND timestamp < TIMESTAMPTZ '2024-03-01 00:00:00+00'),
             s AS (SELECT person_id, timestamp AS t FROM events WHERE team_id = 1 AND event = 'signed_up'
                     AND timestamp >= TIMESTAMPTZ '2024-01-01 00:00:00+00' AND timestamp < TIMESTAMPTZ '2024-03-01 00:00:00+00'),
             b AS (SELECT person_id, timestamp AS t FROM events WHERE team_id = 1 AND event = 'purchase'
                     AND timestamp >= TIMESTAMPTZ '2024-01-01 00:00:00+00' AND timestamp < TIMESTAMPTZ '2024-03-01 00:00:00+00')
        SELECT (SELECT count(DISTINCT person_id) FROM p),
               (SELECT count(DISTINCT p.person_id) FROM p JOIN s ON s.person_id = p.person_id
                  AND s.t >= p.t AND s.t <= p.t + INTERVAL 14 DAY),
               (SELECT count(DISTINCT p.person_id) FROM p JOIN s ON s.person_id = p.person_id AND s.t >= p.t
                  JOIN b ON b.person_id = p.person_id AND b.t >= s.t AND b.t <= p.t + INTERVAL 14 DAY)""",
    "retention_weekly_8": """
        WITH active AS (
          SELECT DISTINCT person_id, date_trunc('week', timestamp + INTERVAL 1 DAY) - INTERVAL 1 DAY AS week
          FROM events
          WHERE team_id = 1 AND event = '$pageview'
            AND timestamp >= TIMESTAMPTZ '2024-01-07 00:00:00+00' AND timestamp < TIMESTAMPTZ '2024-03-03 00:00:00+00')
        SELECT c.week, r.week, count(DISTINCT c.person_id)
        FROM active c JOIN active r ON r.person_id = c.person_id AND r.week >= c.week
        GROUP BY c.week, r.week""",
    "lifecycle_daily": """
        WITH active AS (
          SELECT person_id, date_trunc('day', timestamp) AS day, min(date_trunc('day', person_created_at)) AS created
          FROM events
          WHERE team_id = 1 AND event = '$pageview'
            AND timestamp >= TIMESTAMPTZ '2024-01-30 00:00:00+00' AND timestamp < TIMESTAMPTZ '2024-03-01 00:00:00+00'
          GROUP BY person_id, day),
        marked AS (
          SELECT *, lag(day) OVER (PARTITION BY person_id ORDER BY day) AS previous,
                    lead(day) OVER (PARTITION BY person_id ORDER BY day) AS next
          FROM active)
        SELECT day, CASE WHEN created = day THEN 'new'
                         WHEN previous = day - INTERVAL 1 DAY THEN 'returning' ELSE 'resurrecting' END AS status, count(*)
        FROM marked GROUP BY ALL
        UNION ALL
        SELECT day + INTERVAL 1 DAY, 'dormant', -count(*) FROM marked
        WHERE next IS NULL OR next <> day + INTERVAL 1 DAY GROUP BY ALL""",
}

results = {}
for name, sql in QUERIES.items():
    times = []
    rows = 0
    for run in range(runs + 1):
        started = time.perf_counter()
        rows = len(db.execute(sql).fetchall())
        if run > 0:  # the first run warms caches, as for every engine
            times.append(time.perf_counter() - started)
    results[name] = {"median_s": statistics.median(times), "rows": rows}
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"queries": results, "peak_rss_mb": peak}))
