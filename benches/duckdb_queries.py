"""The DuckDB side of `cargo bench --bench query`: the same two analytics
queries sluice runs, over the same Parquet files (the table's current
snapshot as PyIceberg plans it), timed here so process start-up and file
listing are not counted.

usage: duckdb_queries.py DATA_DIR FROM_US TO_US RUNS
Prints JSON: {"attribution": [seconds...], "peaks": [seconds...], "rows": N}.
"""
import json
import os
import sys
import time

import duckdb
from pyiceberg.catalog.sql import SqlCatalog

data_dir, from_us, to_us, runs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
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
where = "epoch_us(occurred_at) >= $1 AND epoch_us(occurred_at) < $2"

ATTRIBUTION = f"""
SELECT user_id AS principal, count(*) AS requests,
       100.0 * count(*) / sum(count(*)) OVER () AS pct_of_total,
       count(*) FILTER (WHERE success) AS success,
       count(*) FILTER (WHERE NOT success) AS failed,
       max(occurred_at) AS last_seen,
       quantile_cont(latency_ms, 0.5) AS p50, quantile_cont(latency_ms, 0.9) AS p90,
       quantile_cont(latency_ms, 0.99) AS p99
FROM events WHERE {where}
GROUP BY user_id ORDER BY requests DESC, principal NULLS LAST LIMIT 50"""

PEAKS = f"""
WITH per_window AS (
  SELECT user_id AS principal, time_bucket(INTERVAL '1 minute', occurred_at) AS window_start,
         count(*) AS requests
  FROM events WHERE {where} GROUP BY ALL)
SELECT principal, max(requests) AS peak, arg_max(window_start, requests) AS peak_at,
       quantile_cont(requests::DOUBLE, 0.99) AS p99, quantile_cont(requests::DOUBLE, 0.95) AS p95,
       avg(requests) AS mean, count(*) AS windows, sum(requests) AS requests
FROM per_window GROUP BY principal ORDER BY peak DESC, principal NULLS LAST LIMIT 100"""

out = {"rows": con.execute("SELECT count(*) FROM events").fetchone()[0]}
for name, sql in [("attribution", ATTRIBUTION), ("peaks", PEAKS)]:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        con.execute(sql, [from_us, to_us]).fetchall()
        times.append(time.perf_counter() - started)
    out[name] = times
print(json.dumps(out))
