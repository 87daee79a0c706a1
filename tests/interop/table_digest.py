"""Row digests of sluice's tables by two independent readers, to prove that
maintenance (compaction, retention, expiry, cleanup) changes no row it
should not.

usage: table_digest.py DATA_DIR [FROM_DAY]

For each table: PyIceberg scans it; DuckDB reads the Parquet files PyIceberg
plans for the current snapshot. Both digests are DuckDB's bit_xor of a hash
over every non-map column, with the row count; rows before FROM_DAY (days
since the epoch, of the partition column) are left out when it is given.
PyIceberg's inspect tables (snapshots, manifests, files) are read too.
Prints one JSON object.
"""
import json
import os
import sys

import duckdb
import pyarrow as pa
from pyiceberg.catalog.sql import SqlCatalog

TABLES = {
    "platform_event_logs": "occurred_at",
    "pod_logs": "ts",
    "platform_events": "occurred_at",
    "alert_history": "at",
}


def digest(con, relation, columns, day_column, from_day):
    where = ""
    if from_day is not None:
        where = f'WHERE epoch_us("{day_column}") >= {int(from_day) * 86_400_000_000}'
    cols = ", ".join(f'"{c}"' for c in columns)
    n, h = con.execute(f"SELECT count(*), coalesce(bit_xor(hash({cols})), 0) FROM {relation} {where}").fetchone()
    return {"rows": n, "digest": str(h)}


def main():
    data_dir = sys.argv[1]
    from_day = sys.argv[2] if len(sys.argv) > 2 else None
    catalog = SqlCatalog(
        "sluice",
        uri=f"sqlite:///{os.path.abspath(os.path.join(data_dir, 'catalog.db'))}",
        warehouse=f"file://{os.path.abspath(os.path.join(data_dir, 'warehouse'))}",
    )
    out = {}
    for name, day_column in TABLES.items():
        table = catalog.load_table(f"platform.{name}")
        scan = table.scan()
        arrow = scan.to_arrow()
        columns = [f.name for f in arrow.schema if not pa.types.is_map(f.type)]
        con = duckdb.connect()
        con.register("scanned", arrow)
        files = [t.file.file_path.removeprefix("file://") for t in scan.plan_files()]
        entry = {"pyiceberg": digest(con, "scanned", columns, day_column, from_day), "files": len(files)}
        if files:
            listed = ", ".join("'" + f.replace("'", "''") + "'" for f in files)
            entry["duckdb"] = digest(con, f"read_parquet([{listed}])", columns, day_column, from_day)
        else:
            entry["duckdb"] = {"rows": 0, "digest": "0"}
        entry["inspect"] = {
            "snapshots": table.inspect.snapshots().num_rows,
            "manifests": table.inspect.manifests().num_rows,
            "files": table.inspect.files().num_rows,
        }
        current = table.current_snapshot()
        entry["operation"] = current.summary.operation.value if current else None
        out[name] = entry
    print(json.dumps(out))


if __name__ == "__main__":
    main()
