"""Answer the query service's analytics with DuckDB (an independent engine)
over the data files PyIceberg (an independent Iceberg implementation) plans.

usage: query_check.py DATA_DIR REQUESTS_JSON
DATA_DIR is sluice's data dir (embedded SQLite catalog + local warehouse).
REQUESTS_JSON is a file holding a JSON list of requests, each an object with
a "kind": attribution, peaks, simulate, count or files. Prints one JSON list
with one answer per request, in order.

The Rust end-to-end tests compare sluice's answers with these. So that a
shared mistake cannot hide, nothing here comes from sluice: the files are
those of each table's current snapshot as PyIceberg plans them (the
warehouse is never globbed: files of uncommitted or expired snapshots would
count), and every number is computed by DuckDB SQL. Times are integer
microseconds since the Unix epoch (fields ending in `_us`), so comparisons
are exact; time ranges are half-open, [from_us, to_us).
"""
import json
import os
import sys

import duckdb
from pyiceberg.catalog.sql import SqlCatalog

# What a row stands for -> the platform_event_logs column holding it.
DIMENSIONS = {
    "user": "user_id",
    "team": "team",
    "domain": "domain",
    "endpoint": "endpoint",
    "caller_type": "caller_type",
    "service": "service",
}
EVENT_LOGS = "platform_event_logs"
# The equality filters attribution accepts (columns of the same name).
ATTRIBUTION_FILTERS = ["service", "action", "endpoint", "caller_type"]


def open_catalog(data_dir):
    return SqlCatalog(
        "sluice",
        uri=f"sqlite:///{os.path.abspath(os.path.join(data_dir, 'catalog.db'))}",
        warehouse=f"file://{os.path.abspath(os.path.join(data_dir, 'warehouse'))}",
    )


def data_files(table):
    """Paths of the data files of the table's current snapshot."""
    paths = []
    for task in table.scan().plan_files():
        # read_parquet would ignore delete files; sluice only appends.
        if task.delete_files:
            raise SystemExit(f"{task.file.file_path} has delete files: not supported here")
        path = task.file.file_path
        paths.append(path[len("file://"):] if path.startswith("file://") else path)
    return paths


class Tables:
    """Each table named by a request, as a DuckDB view over exactly its
    current snapshot's files (loaded once per run)."""

    def __init__(self, con, catalog):
        self.con, self.catalog, self.files = con, catalog, {}

    def load(self, name):
        if name in self.files:
            return name
        table = self.catalog.load_table(f"platform.{name}")
        paths = data_files(table)
        self.files[name] = paths
        if paths:
            listed = ", ".join("'" + p.replace("'", "''") + "'" for p in paths)
            # union_by_name: files written before a schema change lack the
            # newer columns; they read as NULL, as Iceberg says they should.
            self.con.execute(f"CREATE OR REPLACE TEMP VIEW {name} AS "
                             f"SELECT * FROM read_parquet([{listed}], union_by_name = true)")
        else:
            # read_parquet([]) is an error; an empty table has the schema's columns.
            self.con.register(name, table.schema().as_arrow().empty_table())
        return name


def where(req, equals=()):
    """WHERE clause and parameters: the optional range and equality filters."""
    clauses, params = ["TRUE"], []
    if req.get("from_us") is not None:
        clauses.append("epoch_us(occurred_at) >= ?")
        params.append(int(req["from_us"]))
    if req.get("to_us") is not None:
        clauses.append("epoch_us(occurred_at) < ?")
        params.append(int(req["to_us"]))
    for column in equals:
        if req.get(column) is not None:
            clauses.append(f"{column} = ?")
            params.append(req[column])
    return " AND ".join(clauses), params


def dimension(req):
    by = req.get("by") or "user"
    if by not in DIMENSIONS:
        raise SystemExit(f"by={by!r}: expected one of {', '.join(DIMENSIONS)}")
    return DIMENSIONS[by]


def rows(con, sql, params):
    cur = con.execute(sql, params)
    names = [d[0] for d in cur.description]
    return [dict(zip(names, r)) for r in cur.fetchall()]


def attribution(con, tables, req):
    t = tables.load(EVENT_LOGS)
    cond, params = where(req, ATTRIBUTION_FILTERS)
    total = con.execute(f"SELECT count(*) FROM {t} WHERE {cond}", params).fetchone()[0]
    out = rows(con, f"""
        SELECT {dimension(req)} AS principal,
               count(*) AS requests,
               100.0::DOUBLE * count(*) / sum(count(*)) OVER () AS pct_of_total,
               count(*) FILTER (WHERE success) AS success,
               count(*) FILTER (WHERE NOT success) AS failed,
               epoch_us(max(occurred_at)) AS last_seen_us,
               quantile_cont(latency_ms, 0.5) AS p50_latency_ms,
               quantile_cont(latency_ms, 0.9) AS p90_latency_ms,
               quantile_cont(latency_ms, 0.99) AS p99_latency_ms
        FROM {t} WHERE {cond}
        GROUP BY 1
        ORDER BY requests DESC, principal ASC NULLS LAST
        LIMIT ?""", params + [int(req.get("limit", 50))])
    return {"total": total, "rows": out}


def per_window(tables, req):
    """SQL of the requests per principal per window (windows aligned to the
    epoch; only windows with a request exist) and its parameters."""
    t = tables.load(EVENT_LOGS)
    cond, params = where(req, ["service"])
    width = int(req.get("window_secs", 60)) * 1_000_000
    # The window start, floored (also right before 1970, where % is negative).
    start = f"(epoch_us(occurred_at) - (((epoch_us(occurred_at) % {width}) + {width}) % {width}))"
    sql = f"""SELECT {dimension(req)} AS principal, {start} AS window_us, count(*) AS n
              FROM {t} WHERE {cond} GROUP BY 1, 2"""
    return sql, params


def peaks(con, tables, req):
    windows, params = per_window(tables, req)
    return rows(con, f"""
        WITH w AS ({windows}),
        ranked AS (SELECT *, max(n) OVER (PARTITION BY principal) AS top FROM w)
        SELECT principal,
               max(n) AS peak,
               min(window_us) FILTER (WHERE n = top) AS peak_at_us,
               quantile_cont(n::DOUBLE, 0.99) AS p99,
               quantile_cont(n::DOUBLE, 0.95) AS p95,
               avg(n::DOUBLE) AS mean,
               count(*) AS windows,
               sum(n) AS requests
        FROM ranked
        GROUP BY principal
        ORDER BY peak DESC, principal ASC NULLS LAST
        LIMIT ?""", params + [int(req.get("limit", 100))])


def simulate(con, tables, req):
    windows, params = per_window(tables, req)
    caps = req["caps"]
    con.execute("CREATE OR REPLACE TEMP TABLE caps (idx INTEGER, principal VARCHAR, lim BIGINT)")
    if caps:
        con.executemany("INSERT INTO caps VALUES (?, ?, ?)",
                        [[i, c.get("principal"), int(c["limit"])] for i, c in enumerate(caps)])
    # A principal's own cap, else the default (the cap without a principal);
    # the NULL principal can only have the default. No cap: never limited.
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE breaches AS
        WITH w AS ({windows}),
        capped AS (
          SELECT w.principal, w.window_us, w.n,
                 coalesce(own.idx, dflt.idx) AS idx, coalesce(own.lim, dflt.lim) AS lim
          FROM w
          LEFT JOIN caps own ON own.principal IS NOT NULL AND own.principal = w.principal
          LEFT JOIN caps dflt ON dflt.principal IS NULL)
        SELECT idx, principal,
               count(*) AS breach_windows,
               sum(n - lim) AS limited_requests,
               min(window_us) AS first_breach_us,
               max(window_us) AS last_breach_us
        FROM capped WHERE n > lim
        GROUP BY idx, principal""", params)
    totals = {r["idx"]: r for r in rows(con, """
        SELECT idx, sum(breach_windows) AS breach_windows, sum(limited_requests) AS limited_requests,
               min(first_breach_us) AS first_breach_us, max(last_breach_us) AS last_breach_us
        FROM breaches GROUP BY idx""", [])}
    out = []
    for i in range(len(caps)):
        t = totals.get(i, {})
        out.append({
            "breach_windows": t.get("breach_windows", 0),
            "limited_requests": t.get("limited_requests", 0),
            "first_breach_us": t.get("first_breach_us"),
            "last_breach_us": t.get("last_breach_us"),
            "principals": rows(con, """
                SELECT principal, breach_windows, limited_requests, first_breach_us, last_breach_us
                FROM breaches WHERE idx = ?
                ORDER BY limited_requests DESC, principal ASC NULLS LAST""", [i]),
        })
    return out


def count(con, tables, req):
    t = tables.load(req.get("table", EVENT_LOGS))
    cond, params = where(req)
    return {"rows": con.execute(f"SELECT count(*) FROM {t} WHERE {cond}", params).fetchone()[0]}


def files(con, tables, req):
    name = req.get("table", EVENT_LOGS)
    tables.load(name)
    return {"files": len(tables.files[name])}


KINDS = {"attribution": attribution, "peaks": peaks, "simulate": simulate, "count": count, "files": files}


def main():
    data_dir, requests_json = sys.argv[1], sys.argv[2]
    with open(requests_json) as f:
        requests = json.load(f)
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    tables = Tables(con, open_catalog(data_dir))
    answers = []
    for req in requests:
        if req.get("kind") not in KINDS:
            raise SystemExit(f"unknown request kind {req.get('kind')!r}")
        answers.append(KINDS[req["kind"]](con, tables, req))
    print(json.dumps(answers))


if __name__ == "__main__":
    main()
