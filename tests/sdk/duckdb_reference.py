"""Independent answers to Warren's insights, as plain SQL run by DuckDB over
the Parquet files of Warren's Delta events table.

Usage: duckdb_reference.py TABLE_DIR META_DB DATE_FROM DATE_TO
Persons are resolved through the person-id overrides in the SQLite meta
store (META_DB), as the events table alone names a merged person by the id
it had when the event was ingested. Prints one JSON object: trends (pageviews and DAU per UTC day), browser
totals, funnel step counts ($pageview -> signed_up -> purchase, ordered,
14-day window) and daily recurring retention of $pageview (cohorts of the
14 days ending DATE_TO).
"""

import json
import sqlite3
import sys

import duckdb
from deltalake import DeltaTable

table_dir, meta_db, date_from, date_to = sys.argv[1:5]
files = DeltaTable(table_dir).file_uris()
overrides = sqlite3.connect(meta_db).execute("SELECT old_person_id, override_person_id FROM person_overrides").fetchall()
db = duckdb.connect()
db.execute("SET TimeZone = 'UTC'")
db.execute("CREATE TABLE overrides (old VARCHAR, new VARCHAR)")
if overrides:
    db.executemany("INSERT INTO overrides VALUES (?, ?)", overrides)
db.execute(
    f"""CREATE VIEW events AS
        SELECT e.* REPLACE (coalesce(o.new, e.person_id) AS person_id)
        FROM read_parquet({files!r}, union_by_name = true) e LEFT JOIN overrides o ON o.old = e.person_id"""
)
db.execute(
    f"""CREATE VIEW ranged AS SELECT * FROM events
        WHERE timestamp >= TIMESTAMPTZ '{date_from} 00:00:00+00'
          AND timestamp < TIMESTAMPTZ '{date_to} 00:00:00+00' + INTERVAL 1 DAY"""
)


def rows(sql):
    return db.execute(sql).fetchall()


trends = rows(
    """SELECT strftime(date_trunc('day', timestamp), '%Y-%m-%d') AS day, count(*), count(DISTINCT person_id)
       FROM ranged WHERE event = '$pageview' GROUP BY day ORDER BY day"""
)
browsers = rows(
    """SELECT json_extract_string(properties, '$."$browser"') AS browser, count(*)
       FROM ranged WHERE event = '$pageview' GROUP BY browser ORDER BY count(*) DESC, browser"""
)
window = "INTERVAL 14 DAY"
funnel = rows(
    f"""WITH p AS (SELECT person_id, timestamp AS t FROM ranged WHERE event = '$pageview'),
             s AS (SELECT person_id, timestamp AS t FROM ranged WHERE event = 'signed_up'),
             b AS (SELECT person_id, timestamp AS t FROM ranged WHERE event = 'purchase')
        SELECT
          (SELECT count(DISTINCT person_id) FROM p),
          (SELECT count(DISTINCT p.person_id) FROM p JOIN s ON s.person_id = p.person_id
             AND s.t >= p.t AND s.t <= p.t + {window}),
          (SELECT count(DISTINCT p.person_id) FROM p
             JOIN s ON s.person_id = p.person_id AND s.t >= p.t
             JOIN b ON b.person_id = p.person_id AND b.t >= s.t AND b.t <= p.t + {window})"""
)[0]
retention = rows(
    f"""WITH active AS (
          SELECT DISTINCT person_id, date_trunc('day', timestamp)::DATE AS day FROM events
          WHERE event = '$pageview'
            AND timestamp >= TIMESTAMPTZ '{date_to} 00:00:00+00' - INTERVAL 13 DAY
            AND timestamp < TIMESTAMPTZ '{date_to} 00:00:00+00' + INTERVAL 1 DAY)
        SELECT strftime(c.day, '%Y-%m-%d'), (r.day - c.day) AS period, count(DISTINCT c.person_id)
        FROM active c JOIN active r ON r.person_id = c.person_id AND r.day >= c.day
        GROUP BY c.day, period ORDER BY c.day, period"""
)
print(
    json.dumps(
        {
            "trends": [[d, int(n), int(u)] for d, n, u in trends],
            "browsers": [[b, int(n)] for b, n in browsers],
            "funnel": [int(x) for x in funnel],
            "retention": [[d, int(p), int(n)] for d, p, n in retention],
        }
    )
)
