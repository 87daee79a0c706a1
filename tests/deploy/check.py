"""Offline checks of the deployment artifacts, run by tests/deploy.rs with the
interop venv's Python (tests/interop/requirements.txt pins the packages).

  check.py k8s MANIFEST VERSION...   every object of a multi-document manifest
                                     against the Kubernetes OpenAPI schemas of
                                     each VERSION (kubernetes-validate, strict:
                                     unknown fields are errors), and the
                                     prometheus-operator kinds against their CRD
                                     models (cloudcoil-models-prometheus-operator)
  check.py compose FILE              a compose file against the compose
                                     specification's JSON schema (the copy that
                                     check-jsonschema ships)
  check.py rules MANIFEST DIR        the PrometheusRule's groups into
                                     DIR/sluice-rules-full.yaml, and without
                                     annotations into DIR/sluice-rules.yaml
  check.py promql FILE...            the metric names, their label matchers and
                                     the grouping labels of every PromQL
                                     expression in rule files (YAML) and Grafana
                                     dashboards (JSON), as JSON on stdout
  check.py dashboard FILE            a Grafana dashboard's structure

Each prints what is wrong and exits 1 when something is.
"""

import importlib.resources
import json
import re
import sys

import yaml


def fail(problems):
    for p in problems:
        print(p, file=sys.stderr)
    sys.exit(1)


def load_manifest(path):
    with open(path) as f:
        return [d for d in yaml.safe_load_all(f) if d]


def describe(obj):
    meta = obj.get("metadata") or {}
    return f"{obj.get('kind')}/{meta.get('name')}"


# ------------------------------------------------------------------ k8s

def crd_problems(obj):
    """prometheus-operator objects against the models generated from its CRDs."""
    from cloudcoil.models.prometheus_operator import v1

    model = getattr(v1, obj["kind"], None)
    if model is None:
        return [f"{describe(obj)}: no model for kind {obj['kind']} in {obj['apiVersion']}"]
    try:
        parsed = model.model_validate(obj)
    except Exception as e:  # pydantic.ValidationError
        return [f"{describe(obj)}: {e}"]
    # The models ignore unknown fields; a field the round trip drops is one the
    # CRD does not have (the API server would prune it silently).
    back = parsed.model_dump(mode="json", by_alias=True, exclude_unset=True)
    return [f"{describe(obj)}: unknown field {p}" for p in dropped(obj, back, "")]


def dropped(orig, back, path):
    if isinstance(orig, dict):
        if not isinstance(back, dict):
            return [path or "."]
        out = []
        for k, v in orig.items():
            if k not in back:
                out.append(f"{path}.{k}")
            else:
                out.extend(dropped(v, back[k], f"{path}.{k}"))
        return out
    if isinstance(orig, list):
        if not isinstance(back, list) or len(back) != len(orig):
            return [path]
        out = []
        for i, (a, b) in enumerate(zip(orig, back)):
            out.extend(dropped(a, b, f"{path}[{i}]"))
        return out
    return []


def cmd_k8s(path, versions):
    import kubernetes_validate

    objs = load_manifest(path)
    if not objs:
        fail([f"{path}: no objects"])
    problems = []
    for obj in objs:
        for key in ("apiVersion", "kind", "metadata"):
            if key not in obj:
                problems.append(f"{describe(obj)}: no {key}")
        if problems:
            continue
        if obj["apiVersion"].startswith("monitoring.coreos.com/"):
            problems.extend(crd_problems(obj))
            continue
        for version in versions:
            try:
                kubernetes_validate.validate(obj, version, strict=True)
            except kubernetes_validate.ValidationError as e:
                where = ".".join(str(p) for p in e.path) or "."
                problems.append(f"{describe(obj)} (Kubernetes {version}): at {where}: {e.message}")
            except kubernetes_validate.SchemaNotFoundError as e:
                problems.append(f"{describe(obj)}: {e.message}")
    if problems:
        fail(problems)
    print(f"{len(objs)} objects valid against Kubernetes {', '.join(versions)}: "
          + ", ".join(describe(o) for o in objs))


# ------------------------------------------------------------------ compose

def cmd_compose(path):
    import jsonschema

    ref = importlib.resources.files("check_jsonschema.builtin_schemas.vendor") / "compose-spec.json"
    schema = json.loads(ref.read_text())
    with open(path) as f:
        doc = yaml.safe_load(f)  # merges `<<: *anchor` as compose does
    cls = jsonschema.validators.validator_for(schema)
    validator = cls(schema, format_checker=cls.FORMAT_CHECKER)
    errors = sorted(validator.iter_errors(doc), key=lambda e: [str(p) for p in e.path])
    if errors:
        fail([f"{path}: at {'.'.join(str(p) for p in e.path) or '.'}: {e.message}" for e in errors])
    print(f"{path}: valid against the compose specification ({len(doc.get('services', {}))} services)")


# ------------------------------------------------------------------ rules

def cmd_rules(path, out_dir):
    rules = [o for o in load_manifest(path) if o.get("kind") == "PrometheusRule"]
    if len(rules) != 1:
        fail([f"{path}: expected one PrometheusRule, found {len(rules)}"])
    groups = rules[0]["spec"]["groups"]
    with open(f"{out_dir}/sluice-rules-full.yaml", "w") as f:
        yaml.safe_dump({"groups": groups}, f, sort_keys=False)
    bare = json.loads(json.dumps(groups))
    for g in bare:
        for r in g["rules"]:
            r.pop("annotations", None)
    with open(f"{out_dir}/sluice-rules.yaml", "w") as f:
        yaml.safe_dump({"groups": bare}, f, sort_keys=False)
    print(sum(len(g["rules"]) for g in groups))


# ------------------------------------------------------------------ PromQL

AGGREGATIONS = {
    "sum", "min", "max", "avg", "group", "stddev", "stdvar", "count",
    "count_values", "bottomk", "topk", "quantile", "limitk", "limit_ratio",
}
KEYWORDS = {
    "and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring",
    "group_left", "group_right", "atan2", "inf", "nan",
}
LABEL_LISTS = {"by", "without", "on", "ignoring", "group_left", "group_right"}
TOKEN = re.compile(r"""
    (?P<ws>\s+)
  | (?P<str>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`)
  | (?P<num>[0-9][0-9a-zA-Z_.+-]*)
  | (?P<ident>[a-zA-Z_:][a-zA-Z0-9_:]*)
  | (?P<op>=~|!~|!=|==|<=|>=|[-+*/%^<>=(){}\[\],@])
""", re.VERBOSE)


def tokens(expr):
    # Grafana's variables: $__rate_interval and the like are ranges; the rest
    # ($namespace, ${namespace}) only appear inside matcher values.
    expr = re.sub(r"\$__\w+", "5m", expr)
    expr = re.sub(r"\$\{?(\w+)\}?", r"\1", expr)
    pos, out = 0, []
    while pos < len(expr):
        m = TOKEN.match(expr, pos)
        if not m:
            raise ValueError(f"cannot tokenize {expr[pos:pos + 20]!r} in {expr!r}")
        pos = m.end()
        if m.lastgroup != "ws":
            out.append((m.lastgroup, m.group()))
    return out


def analyse(expr):
    """Metric selectors (name, matcher labels) and grouping labels of one expression."""
    toks = tokens(expr)
    metrics, grouping = [], set()
    i = 0

    def label_list(j):
        # toks[j] is "(": identifiers up to ")"
        labels = []
        j += 1
        while j < len(toks) and toks[j][1] != ")":
            if toks[j][0] == "ident":
                labels.append(toks[j][1])
            j += 1
        return labels, j + 1

    def matchers(j):
        # toks[j] is "{": label op value, … up to "}"
        labels = []
        j += 1
        while j < len(toks) and toks[j][1] != "}":
            if toks[j][0] == "ident" and j + 1 < len(toks) and toks[j + 1][1] in ("=", "!=", "=~", "!~"):
                labels.append(toks[j][1])
            j += 1
        return labels, j + 1

    while i < len(toks):
        kind, text = toks[i]
        nxt = toks[i + 1][1] if i + 1 < len(toks) else None
        if text == "[":
            while i < len(toks) and toks[i][1] != "]":
                i += 1
            i += 1
            continue
        if kind == "ident" and text in LABEL_LISTS and nxt == "(":
            labels, i = label_list(i + 1)
            grouping.update(labels)
            continue
        if kind == "ident" and (text in KEYWORDS or nxt == "(" or text in AGGREGATIONS):
            i += 1
            continue
        if kind == "ident":
            labels = []
            i += 1
            if i < len(toks) and toks[i][1] == "{":
                labels, i = matchers(i)
            metrics.append({"name": text, "labels": labels})
            continue
        if text == "{":  # a selector without a name: {__name__="…"}
            start = i
            labels, i = matchers(i)
            names = [t[1].strip("\"'`") for k, t in zip(range(start, i), toks[start:i])
                     if t[0] == "str" and toks[k - 2][1] == "__name__"]
            for n in names:
                metrics.append({"name": n, "labels": [l for l in labels if l != "__name__"]})
            continue
        i += 1
    return metrics, sorted(grouping)


def expressions(path):
    """(where, expr) of every PromQL expression in a rule file or a dashboard."""
    with open(path) as f:
        text = f.read()
    if path.endswith(".json"):
        dash = json.loads(text)
        out = []

        def panels(ps):
            for p in ps:
                yield p
                yield from panels(p.get("panels", []))

        for p in panels(dash.get("panels", [])):
            for t in p.get("targets", []):
                if "expr" in t:
                    out.append((f"{path}: panel {p.get('title')!r} {t.get('refId')}", t["expr"]))
        for v in dash.get("templating", {}).get("list", []):
            q = v.get("query")
            q = q.get("query") if isinstance(q, dict) else q
            m = re.match(r"label_values\((.*),\s*\w+\)$", q or "")
            if v.get("type") == "query" and m:
                out.append((f"{path}: variable {v.get('name')}", m.group(1)))
        return out
    doc = yaml.safe_load(text)
    if doc.get("kind") == "PrometheusRule":
        doc = doc["spec"]
    return [(f"{path}: {r.get('alert') or r.get('record')}", r["expr"])
            for g in doc["groups"] for r in g["rules"]]


def cmd_promql(paths):
    out = []
    for path in paths:
        for where, expr in expressions(path):
            metrics, grouping = analyse(expr)
            out.append({"where": where, "expr": expr, "metrics": metrics, "grouping": grouping})
    json.dump(out, sys.stdout, indent=1)


# ------------------------------------------------------------------ dashboard

def cmd_dashboard(path):
    with open(path) as f:
        dash = json.load(f)
    problems = []
    for key in ("uid", "title", "panels", "templating", "schemaVersion"):
        if key not in dash:
            problems.append(f"no {key}")
    variables = {v.get("name"): v for v in dash.get("templating", {}).get("list", [])}
    if variables.get("datasource", {}).get("type") != "datasource":
        problems.append("no datasource variable (type datasource) for the Prometheus to use")
    ids, cells = set(), {}
    for p in dash.get("panels", []):
        pid, title = p.get("id"), p.get("title")
        if pid in ids:
            problems.append(f"panel id {pid} used twice")
        ids.add(pid)
        g = p.get("gridPos", {})
        if not all(isinstance(g.get(k), int) for k in "hwxy") or g["x"] + g["w"] > 24:
            problems.append(f"panel {title!r}: gridPos {g} is not within the 24 columns")
            continue
        for x in range(g["x"], g["x"] + g["w"]):
            for y in range(g["y"], g["y"] + g["h"]):
                if (x, y) in cells:
                    problems.append(f"panel {title!r} overlaps {cells[(x, y)]!r}")
                    break
                cells[(x, y)] = title
            else:
                continue
            break
        if p.get("type") == "row":
            continue
        if p.get("datasource", {}).get("uid") != "${datasource}":
            problems.append(f"panel {title!r}: datasource is not the ${{datasource}} variable")
        targets = p.get("targets", [])
        if not targets:
            problems.append(f"panel {title!r}: no targets")
        refs = [t.get("refId") for t in targets]
        if len(set(refs)) != len(refs) or None in refs:
            problems.append(f"panel {title!r}: refIds {refs} are not unique")
        for t in targets:
            metrics, _ = analyse(t.get("expr", ""))
            for m in metrics:
                if m["name"] != "up" and "namespace" not in m["labels"]:
                    problems.append(f"panel {title!r}: {m['name']} is not filtered by $namespace")
    if problems:
        fail([f"{path}: {p}" for p in problems])
    print(f"{path}: {len(ids)} panels")


def main(argv):
    if len(argv) >= 3 and argv[1] == "k8s":
        cmd_k8s(argv[2], argv[3:] or ["1.33"])
    elif len(argv) == 3 and argv[1] == "compose":
        cmd_compose(argv[2])
    elif len(argv) == 4 and argv[1] == "rules":
        cmd_rules(argv[2], argv[3])
    elif len(argv) >= 3 and argv[1] == "promql":
        cmd_promql(argv[2:])
    elif len(argv) == 3 and argv[1] == "dashboard":
        cmd_dashboard(argv[2])
    else:
        print(__doc__, file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main(sys.argv)
