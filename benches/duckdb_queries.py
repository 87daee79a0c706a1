"""The DuckDB side of `cargo bench --bench query`: the analytics sluice
serves, over the same Parquet files (the table's current snapshot as
PyIceberg plans it), written as DuckDB's own users write them, timed here so
process start-up and file listing are not counted.

Why this is DuckDB at its best:
- time filters compare the column with a TIMESTAMPTZ value
  (`occurred_at >= $from`), which DuckDB pushes into the Parquet scan and
  checks against row-group statistics; a function over the column
  (`epoch_us(occurred_at) >= …`, what this file did before) defeats both;
- the three percentiles are one `quantile_cont(latency_ms, [0.5, 0.9, 0.99])`,
  which sorts each group once;
- the view over `read_parquet([...])` is created once and each query runs
  RUNS times on the warm connection, as sluice's do; the bench compares
  medians;
- DuckDB uses every core (its default).

usage: duckdb_queries.py DATA_DIR FROM_ISO TO_ISO RUNS
Prints JSON: {"rows": N, "<query>": {"times": [seconds...], "first": [...]}}
where "first" is the first answer row, for the bench to compare with sluice's.
"""
import datetime
import json
import os
import sys
import time

import duckdb
from pyiceberg.catalog.sql import SqlCatalog

data_dir, from_iso, to_iso, runs = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
t_from = datetime.datetime.fromisoformat(from_iso.replace("Z", "+00:00"))
t_to = datetime.datetime.fromisoformat(to_iso.replace("Z", "+00:00"))
catalog = SqlCatalog(
    "sluice",
    uri=f"sqlite:///{os.path.abspath(os.path.join(data_dir, 'catalog.db'))}",
    warehouse=f"file://{os.path.abspath(os.path.join(data_dir, 'warehouse'))}",
)
table = catalog.load_table("platform.platform_event_logs")
files = [t.file.file_path.removeprefix("file://") for t in table.scan().plan_files()]
con = duckdb.connect()
con.execute("SET TimeZone = 'UTC'")
listed = ", ".join("'" + f + "'" for f in files)
con.execute(f"CREATE VIEW events AS SELECT * FROM read_parquet([{listed}])")


def attribution(column):
    return f"""
SELECT {column} AS principal, count(*) AS requests,
       100.0 * count(*) / sum(count(*)) OVER () AS pct_of_total,
       count(*) FILTER (WHERE success) AS success,
       count(*) FILTER (WHERE NOT success) AS failed,
       max(occurred_at) AS last_seen,
       quantile_cont(latency_ms, [0.5, 0.9, 0.99]) AS latency_ms_p50_p90_p99
FROM events WHERE occurred_at >= $1 AND occurred_at < $2
GROUP BY {column} ORDER BY requests DESC, principal NULLS LAST LIMIT 50"""


PEAKS = """
WITH per_window AS (
  SELECT user_id AS principal, time_bucket(INTERVAL '1 minute', occurred_at) AS window_start,
         count(*) AS requests
  FROM events WHERE occurred_at >= $1 AND occurred_at < $2 GROUP BY ALL)
SELECT principal, max(requests) AS peak, arg_max(window_start, requests) AS peak_at,
       quantile_cont(requests, [0.99, 0.95]) AS p99_p95,
       avg(requests) AS mean, count(*) AS windows, sum(requests) AS requests
FROM per_window GROUP BY principal ORDER BY peak DESC, principal NULLS LAST LIMIT 100"""

# The attribution series: the top 5 users' requests per hour.
SERIES = """
WITH ranked AS (
  SELECT user_id AS principal, count(*) AS total FROM events
  WHERE occurred_at >= $1 AND occurred_at < $2
  GROUP BY user_id ORDER BY total DESC, principal NULLS LAST LIMIT 5)
SELECT r.principal, r.total, time_bucket(INTERVAL '1 hour', e.occurred_at) AS bucket,
       count(*) AS requests
FROM events e JOIN ranked r ON e.user_id IS NOT DISTINCT FROM r.principal
WHERE e.occurred_at >= $1 AND e.occurred_at < $2
GROUP BY ALL ORDER BY r.total DESC, r.principal NULLS LAST, bucket"""

QUERIES = [
    ("attribution_user", attribution("user_id")),
    ("attribution_team", attribution("team")),
    ("attribution_endpoint", attribution("endpoint")),
    ("peaks", PEAKS),
    ("series", SERIES),
]

out = {"rows": con.execute("SELECT count(*) FROM events").fetchone()[0]}
for name, sql in QUERIES:
    times, first = [], None
    for _ in range(runs):
        started = time.perf_counter()
        rows = con.execute(sql, [t_from, t_to]).fetchall()
        times.append(time.perf_counter() - started)
        first = rows[0] if rows else None
    out[name] = {"times": times, "first": [str(v) for v in first] if first else None}
print(json.dumps(out))
