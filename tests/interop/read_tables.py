"""Read sluice's tables with PyIceberg (an independent Iceberg implementation)
and check them against independent expectations.

usage: read_tables.py DATA_DIR DIRECTORY_JSON
DATA_DIR is sluice's data dir (embedded SQLite catalog + local warehouse).
DIRECTORY_JSON is the principal directory as JSON ({"teams", "users",
"service_accounts"}), used to recompute team/domain/caller_type/endpoint here.
Prints one JSON object with per-table facts and enrichment mismatches.
"""
import ipaddress
import json
import os
import re
import sys

import pyarrow.compute as pc
from pyiceberg.catalog.sql import SqlCatalog

INTERNAL = [ipaddress.ip_network(n) for n in
            ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "127.0.0.0/8", "::1/128", "fc00::/7"]]
UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
HEX = re.compile(r"^[0-9a-fA-F]{16,}$")


def endpoint(path):
    p = re.split(r"[?#]", path, maxsplit=1)[0]
    p = p.lstrip("/")
    m = re.match(r"^api/v\d+/", p)
    if m:
        p = p[m.end():]
    p = p.rstrip("/")
    segs = ["{id}" if s and (s.isdigit() or UUID.match(s) or HEX.match(s)) else s for s in p.split("/")]
    return "/".join(segs)


def caller(ip, service_account):
    if service_account:
        return "internal"
    if ip is None:
        return "unknown"
    addr = ipaddress.ip_address(ip)
    return "internal" if any(addr in n for n in INTERNAL) else "external"


def main():
    data_dir, directory_json = sys.argv[1], sys.argv[2]
    with open(directory_json) as f:
        directory = json.load(f)
    catalog = SqlCatalog(
        "sluice",
        uri=f"sqlite:///{os.path.abspath(os.path.join(data_dir, 'catalog.db'))}",
        warehouse=f"file://{os.path.abspath(os.path.join(data_dir, 'warehouse'))}",
    )
    out = {"tables": {}}
    for name, id_col in [("platform_event_logs", "event_id"), ("pod_logs", "line_id"), ("platform_events", "event_id")]:
        table = catalog.load_table(f"platform.{name}")
        arrow = table.scan().to_arrow()
        snapshots = table.snapshots()
        positions = {}
        current = table.current_snapshot()
        if current is not None and "sluice.positions" in current.summary.additional_properties:
            positions = json.loads(current.summary.additional_properties["sluice.positions"])
        out["tables"][name] = {
            "rows": arrow.num_rows,
            "distinct_ids": len(pc.unique(arrow[id_col])),
            "snapshots": len(snapshots),
            "positions": len(positions),
            "partition_fields": [f.name for f in table.spec().fields],
            "sort_fields": [table.schema().find_field(f.source_id).name for f in table.sort_order().fields],
        }
        if name == "pod_logs":
            out["tables"][name]["restarts_of_iom_cluster_0"] = sorted(
                set(arrow.filter(pc.equal(arrow["pod"], "iom-cluster-0"))["restart"].to_pylist()))
            out["tables"][name]["levels"] = sorted(x for x in set(arrow["level"].to_pylist()) if x is not None)
        if name == "platform_event_logs":
            mismatches = []
            counts = {}
            rows = arrow.select(["user_id", "path", "client_ip", "service_account", "endpoint",
                                 "caller_type", "team", "domain", "attributes"]).to_pylist()
            for r in rows:
                user = r["user_id"]
                sa = user in directory["service_accounts"]
                team = directory["service_accounts"].get(user) or directory["users"].get(user)
                domain = directory["teams"][team]["domain"] if team else None
                want = {
                    "endpoint": endpoint(r["path"]) if r["path"] is not None else None,
                    "caller_type": caller(r["client_ip"], sa or r["service_account"] is True),
                    "team": team,
                    "domain": domain,
                }
                for k, v in want.items():
                    if r[k] != v and len(mismatches) < 10:
                        mismatches.append({"column": k, "want": v, "got": r[k], "row": {x: r[x] for x in ("user_id", "path", "client_ip")}})
                counts[r["caller_type"]] = counts.get(r["caller_type"], 0) + 1
            out["tables"][name]["enrichment_mismatches"] = mismatches
            out["tables"][name]["caller_types"] = counts
            out["tables"][name]["with_attributes"] = sum(1 for r in rows if r["attributes"])
    print(json.dumps(out))


if __name__ == "__main__":
    main()
