"""Validate sluice's generated data against the published JSON Schemas with an
independent validator (Python `jsonschema`), and report verdicts for a corpus
of edge cases so the Rust validator can be compared with it.

usage: validate_contracts.py SCHEMA_DIR GEN_DIR CASES_FILE
prints one JSON object: counts per file kind, the first few failures, and
per-case verdicts ({"case": i, "valid": bool}).
"""
import glob
import json
import os
import sys

import jsonschema


def validator(schema_dir, name):
    with open(os.path.join(schema_dir, name)) as f:
        schema = json.load(f)
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema, format_checker=cls.FORMAT_CHECKER)


def main():
    schema_dir, gen_dir, cases_file = sys.argv[1:4]
    events = validator(schema_dir, "platform_event.schema.json")
    lifecycle = validator(schema_dir, "lifecycle_event.schema.json")
    out = {"events": 0, "lifecycle": 0, "failures": []}

    def check(v, path, key):
        with open(path) as f:
            for n, line in enumerate(f, 1):
                record = json.loads(line)
                errors = sorted(v.iter_errors(record), key=str)
                if errors and len(out["failures"]) < 10:
                    out["failures"].append(f"{path}:{n}: {errors[0].message}")
                out[key] += 0 if errors else 1

    for path in sorted(glob.glob(os.path.join(gen_dir, "events", "*.ndjson"))):
        check(events, path, "events")
    check(lifecycle, os.path.join(gen_dir, "k8s-events.ndjson"), "lifecycle")

    verdicts = []
    with open(cases_file) as f:
        for i, line in enumerate(f):
            case = json.loads(line)
            verdicts.append({"case": i, "valid": events.is_valid(case)})
    out["cases"] = verdicts
    print(json.dumps(out))


if __name__ == "__main__":
    main()
