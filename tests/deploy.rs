//! The deployment artifacts under `deploy/`, checked without Docker or a
//! cluster:
//!
//! - the Helm chart renders (`helm template`, the real Helm, installed by
//!   `scripts/deploy-tools`) with its default values and a production-like
//!   set, and every rendered object validates offline against the
//!   Kubernetes OpenAPI schemas (`kubernetes-validate`, strict) or, for the
//!   prometheus-operator kinds, against models generated from their CRDs;
//! - the configuration the chart renders loads in `sluice` itself, with each
//!   container's environment and arguments, and points at what the pod mounts;
//! - the compose file validates against the compose specification's schema
//!   and its configuration loads too;
//! - the Dockerfile's build stage runs `scripts/build-release` and nothing
//!   else compiles, with CI's toolchain and Debian release, and the runtime
//!   stage has every library the binary links;
//! - the Prometheus rules pass `promtool check rules` and their unit tests
//!   (`promtool test rules`), and every metric the rules and the dashboard
//!   use is one the code registers, with labels it has.
//!
//! Each check is also shown failing on a deliberately broken input.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde::Deserialize;
use serde_json::{Value, json};

const NAMESPACE: &str = "observability";
/// The oldest Kubernetes the chart supports (Chart.yaml kubeVersion) and the
/// API level sluice's own client is built for (k8s-openapi v1_33).
const KUBE_VERSIONS: [&str; 2] = ["1.27", "1.33"];
/// Labels Prometheus attaches to every scraped series (prometheus-operator's
/// service discovery), beside the ones sluice exports.
const TARGET_LABELS: [&str; 7] = [
    "job",
    "instance",
    "namespace",
    "pod",
    "service",
    "container",
    "endpoint",
];

// ------------------------------------------------------------------ helpers

fn repo(rel: &str) -> PathBuf {
    sluice_testkit::source_path(rel)
}

fn chart() -> PathBuf {
    repo("deploy/helm/sluice")
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

fn tool(env: &str) -> PathBuf {
    match std::env::var(env) {
        Ok(v) if !v.is_empty() => PathBuf::from(v),
        _ => panic!(
            "{env} is not set: the deployment checks need it. Run the test suite with \
             `scripts/test`, which installs it (scripts/deploy-tools), or export {env} yourself."
        ),
    }
}

fn helm() -> PathBuf {
    tool("SLUICE_TEST_HELM")
}

fn promtool() -> PathBuf {
    tool("SLUICE_TEST_PROMTOOL")
}

fn run(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"))
}

fn text(o: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}\n--- stderr\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn assert_ok(o: &Output, what: &str) -> String {
    assert!(o.status.success(), "{what} failed:\n{}", text(o));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// `check.py` with the interop venv's Python.
fn check_py(args: &[&str]) -> Output {
    run(Command::new(sluice_testkit::python())
        .arg(repo("tests/deploy/check.py"))
        .args(args))
}

/// `helm template` of the chart; Err(stderr) when Helm refuses.
fn render(values: &[PathBuf], sets: &[&str]) -> Result<String, String> {
    let mut cmd = Command::new(helm());
    cmd.args(["template", "sluice"]).arg(chart()).args([
        "--namespace",
        NAMESPACE,
        "--kube-version",
        "1.33.0",
    ]);
    for v in values {
        cmd.arg("--values").arg(v);
    }
    for s in sets {
        cmd.args(["--set", s]);
    }
    let o = run(&mut cmd);
    if o.status.success() {
        Ok(String::from_utf8_lossy(&o.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&o.stderr).into_owned())
    }
}

fn render_ok(values: &[PathBuf], sets: &[&str]) -> String {
    render(values, sets).unwrap_or_else(|e| panic!("helm template {values:?} {sets:?}:\n{e}"))
}

fn production() -> Vec<PathBuf> {
    vec![repo("tests/deploy/values-production.yaml")]
}

fn objects(manifest: &str) -> Vec<Value> {
    serde_yaml_ng::Deserializer::from_str(manifest)
        .map(|doc| Value::deserialize(doc).unwrap_or_else(|e| panic!("rendered YAML: {e}")))
        .filter(|v| !v.is_null())
        .collect()
}

fn find<'a>(objs: &'a [Value], kind: &str, name_suffix: &str) -> &'a Value {
    objs.iter()
        .find(|o| o["kind"] == kind && str_of(&o["metadata"]["name"]).ends_with(name_suffix))
        .unwrap_or_else(|| panic!("no {kind} named *{name_suffix} among {}", kinds(objs)))
}

fn kinds(objs: &[Value]) -> String {
    objs.iter()
        .map(|o| format!("{}/{}", str_of(&o["kind"]), str_of(&o["metadata"]["name"])))
        .collect::<Vec<_>>()
        .join(", ")
}

fn str_of(v: &Value) -> &str {
    v.as_str().unwrap_or("")
}

fn array(v: &Value) -> &[Value] {
    v.as_array().map(Vec::as_slice).unwrap_or(&[])
}

fn write_temp(dir: &Path, name: &str, content: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, content).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
    path
}

/// The manifest validated against the Kubernetes schemas (and CRD models).
fn validate(manifest: &str) -> Output {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = write_temp(dir.path(), "manifest.yaml", manifest);
    let mut args = vec!["k8s", path.to_str().expect("utf-8 path")];
    args.extend(KUBE_VERSIONS);
    check_py(&args)
}

fn to_yaml(objs: &[Value]) -> String {
    objs.iter()
        .map(|o| serde_yaml_ng::to_string(o).expect("YAML"))
        .collect::<Vec<_>>()
        .join("---\n")
}

// ------------------------------------------------------------------ the chart

/// Workloads running sluice: (kind, name, pod spec).
fn workloads(objs: &[Value]) -> Vec<(&str, &str, &Value)> {
    objs.iter()
        .filter(|o| o["kind"] == "Deployment" || o["kind"] == "DaemonSet")
        .map(|o| {
            (
                str_of(&o["kind"]),
                str_of(&o["metadata"]["name"]),
                &o["spec"]["template"]["spec"],
            )
        })
        .collect()
}

/// What holds for every render: probes, security, volumes, RBAC, replicas.
fn check_rendered(objs: &[Value]) {
    let roles: BTreeSet<&str> = workloads(objs).iter().map(|(_, name, _)| *name).collect();
    for role in [
        "collector",
        "collector-watch",
        "writer",
        "indexer",
        "maintainer",
        "query",
    ] {
        assert!(
            roles.contains(format!("sluice-{role}").as_str()),
            "no workload for {role}: {roles:?}"
        );
    }
    for (kind, name, spec) in workloads(objs) {
        let pod_sec = &spec["securityContext"];
        for c in array(&spec["containers"]) {
            let what = format!("{kind} {name} container {}", str_of(&c["name"]));
            assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/healthz", "{what}");
            assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/readyz", "{what}");
            let http = array(&c["ports"])
                .iter()
                .find(|p| p["name"] == "http")
                .unwrap_or_else(|| panic!("{what}: no port named http"));
            assert_eq!(c["livenessProbe"]["httpGet"]["port"], "http", "{what}");
            assert_eq!(c["readinessProbe"]["httpGet"]["port"], "http", "{what}");
            assert!(http["containerPort"].is_u64(), "{what}");
            let sec = &c["securityContext"];
            assert_eq!(sec["readOnlyRootFilesystem"], true, "{what}");
            assert_eq!(sec["allowPrivilegeEscalation"], false, "{what}");
            assert_eq!(sec["capabilities"]["drop"], json!(["ALL"]), "{what}");
            assert!(
                c["resources"]["requests"].is_object() && c["resources"]["limits"].is_object(),
                "{what}: requests and limits"
            );
            if name.ends_with("sluice-collector") {
                // Root only to read the kubelet's 0640 files, nothing more.
                assert_eq!(
                    sec["capabilities"]["add"],
                    json!(["DAC_READ_SEARCH"]),
                    "{what}"
                );
            } else {
                assert_eq!(pod_sec["runAsNonRoot"], true, "{what}");
                assert!(pod_sec["runAsUser"].as_u64().unwrap_or(0) > 0, "{what}");
                assert!(sec["capabilities"]["add"].is_null(), "{what}");
            }
            // With a read-only root, every path sluice writes is a volume.
            let mounts: BTreeSet<&str> = array(&c["volumeMounts"])
                .iter()
                .map(|m| str_of(&m["mountPath"]))
                .collect();
            for path in ["/var/lib/sluice", "/tmp", "/etc/sluice/config"] {
                assert!(mounts.contains(path), "{what}: {path} is not mounted");
            }
            // Secrets only by reference.
            for e in array(&c["env"]) {
                let n = str_of(&e["name"]);
                if n.contains("SECRET")
                    || n.contains("TOKEN")
                    || n.contains("CREDENTIAL")
                    || n == "SLUICE_CATALOG__URI"
                {
                    assert!(
                        e["valueFrom"]["secretKeyRef"].is_object(),
                        "{what}: {n} is not taken from a Secret"
                    );
                }
            }
        }
    }

    // The node collector: every node, the log tree read-only, node name.
    let ds = find(objs, "DaemonSet", "sluice-collector");
    let spec = &ds["spec"]["template"]["spec"];
    assert!(
        array(&spec["tolerations"])
            .iter()
            .any(|t| t["operator"] == "Exists" && t["key"].is_null()),
        "the collector does not tolerate every taint: {}",
        spec["tolerations"]
    );
    let c = &spec["containers"][0];
    let logs = array(&c["volumeMounts"])
        .iter()
        .find(|m| m["mountPath"] == "/var/log/pods")
        .expect("/var/log/pods mounted");
    assert_eq!(logs["readOnly"], true);
    let vol = array(&spec["volumes"])
        .iter()
        .find(|v| v["name"] == logs["name"])
        .expect("the pod-logs volume");
    assert_eq!(vol["hostPath"]["path"], "/var/log/pods");
    let node = array(&c["env"])
        .iter()
        .find(|e| e["name"] == "NODE_NAME")
        .expect("NODE_NAME");
    assert_eq!(node["valueFrom"]["fieldRef"]["fieldPath"], "spec.nodeName");
    assert_eq!(c["args"], json!(["collect"]));

    // The watch runs once, with exactly the RBAC the watcher needs.
    let watch = find(objs, "Deployment", "sluice-collector-watch");
    assert_eq!(watch["spec"]["replicas"], 1);
    let wspec = &watch["spec"]["template"]["spec"];
    assert!(
        array(&wspec["containers"][0]["args"])
            .iter()
            .any(|a| a == "--kubernetes"),
        "the watch Deployment does not run --kubernetes"
    );
    let sa = str_of(&wspec["serviceAccountName"]);
    let binding = objs
        .iter()
        .find(|o| {
            o["kind"] == "ClusterRoleBinding"
                && array(&o["subjects"])
                    .iter()
                    .any(|s| s["name"] == sa && s["namespace"] == NAMESPACE)
        })
        .unwrap_or_else(|| panic!("no ClusterRoleBinding for {sa}"));
    let role = objs
        .iter()
        .find(|o| o["kind"] == "ClusterRole" && o["metadata"]["name"] == binding["roleRef"]["name"])
        .expect("the bound ClusterRole");
    for (group, resource) in watched_resources() {
        for verb in ["get", "list", "watch"] {
            assert!(
                array(&role["rules"]).iter().any(|r| {
                    array(&r["apiGroups"]).iter().any(|g| g == group.as_str())
                        && array(&r["resources"])
                            .iter()
                            .any(|x| x == resource.as_str())
                        && array(&r["verbs"]).iter().any(|v| v == verb)
                }),
                "ClusterRole lacks {verb} on {group}/{resource}, which kube_watch.rs watches: {}",
                role["rules"]
            );
        }
    }
    // Nobody else gets an API token — but the maintainer, which may only
    // hold its Lease (docs/maintenance.md), in its own namespace.
    for (_, name, spec) in workloads(objs) {
        if name.ends_with("maintainer") && spec["automountServiceAccountToken"] == true {
            let sa = str_of(&spec["serviceAccountName"]);
            let binding = objs
                .iter()
                .find(|o| {
                    o["kind"] == "RoleBinding"
                        && array(&o["subjects"]).iter().any(|s| s["name"] == sa)
                })
                .unwrap_or_else(|| panic!("no RoleBinding for {sa}"));
            assert!(
                !objs.iter().any(|o| o["kind"] == "ClusterRoleBinding"
                    && array(&o["subjects"]).iter().any(|s| s["name"] == sa)),
                "{sa} must not be bound cluster-wide"
            );
            let role = objs
                .iter()
                .find(|o| {
                    o["kind"] == "Role" && o["metadata"]["name"] == binding["roleRef"]["name"]
                })
                .expect("the bound Role");
            for rule in array(&role["rules"]) {
                assert_eq!(rule["apiGroups"], json!(["coordination.k8s.io"]), "{rule}");
                assert_eq!(rule["resources"], json!(["leases"]), "{rule}");
            }
            continue;
        }
        if !name.ends_with("collector-watch") {
            assert_eq!(spec["automountServiceAccountToken"], false, "{name}");
        }
    }

    // Writers: no more than partitions, no surge beyond them, one indexer.
    let writer = find(objs, "Deployment", "sluice-writer");
    assert_eq!(
        writer["spec"]["strategy"]["rollingUpdate"]["maxSurge"], 0,
        "a surging writer would find no partition"
    );
    let indexer = find(objs, "Deployment", "sluice-indexer");
    assert_eq!(indexer["spec"]["replicas"], 1);
    assert_eq!(indexer["spec"]["strategy"]["type"], "Recreate");
    // The splits being built stay within the container's memory, with room
    // for the data file being read.
    let ic = &indexer["spec"]["template"]["spec"]["containers"][0];
    let args = array(&ic["args"]);
    let budget_mib: u64 = args
        .iter()
        .position(|a| a == "--memory-mib")
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.as_str()?.parse().ok())
        .expect("the indexer is given --memory-mib");
    let limit = str_of(&ic["resources"]["limits"]["memory"]);
    let limit_mib = mebibytes(limit).expect("the indexer's memory limit in Gi or Mi");
    assert!(
        budget_mib + 1024 <= limit_mib,
        "--memory-mib {budget_mib} leaves less than 1 GiB under the {limit} limit"
    );
    // All queries of a query pod together stay under its memory limit, with
    // room for the rest of the process.
    let qc = &find(objs, "Deployment", "sluice-query")["spec"]["template"]["spec"]["containers"][0];
    let config = rendered_config(objs);
    let global_mib = config["query"]["global_memory_limit_mb"]
        .as_integer()
        .expect("[query] global_memory_limit_mb in the rendered config")
        as u64;
    let limit = str_of(&qc["resources"]["limits"]["memory"]);
    let limit_mib = mebibytes(limit).expect("the query pods' memory limit in Gi or Mi");
    assert!(
        global_mib + 512 <= limit_mib,
        "global_memory_limit_mb {global_mib} leaves less than 512 MiB under the {limit} limit"
    );
    let svc = find(objs, "Service", "sluice-query");
    assert_eq!(svc["spec"]["ports"][0]["targetPort"], "http");
}

/// `3Gi` or `512Mi` in MiB.
fn mebibytes(quantity: &str) -> Option<u64> {
    quantity
        .strip_suffix("Gi")
        .and_then(|g| g.parse::<u64>().ok())
        .map(|g| g * 1024)
        .or_else(|| quantity.strip_suffix("Mi").and_then(|m| m.parse().ok()))
}

/// (API group, resource) of every kind `ingest/src/collect/kube_watch.rs`
/// watches: the variants of its `enum Kind`, placed in their group by its
/// `use k8s_openapi::api::<group>::v1::{…}` lines.
fn watched_resources() -> Vec<(String, String)> {
    let src = read(&repo("ingest/src/collect/kube_watch.rs"));
    let body = between(&src, "enum Kind {", "}").expect("enum Kind in kube_watch.rs");
    let mut groups = BTreeMap::new();
    for line in src.lines() {
        let Some(rest) = line.trim().strip_prefix("use k8s_openapi::api::") else {
            continue;
        };
        let Some((group, types)) = rest.split_once("::v1::") else {
            continue;
        };
        let group = if group == "core" { "" } else { group };
        for t in types.trim_matches(|c| "{};".contains(c)).split(',') {
            groups.insert(t.trim().to_string(), group.to_string());
        }
    }
    let out: Vec<_> = body
        .split(',')
        .map(|v| v.trim())
        .filter(|v| !v.is_empty())
        .map(|variant| {
            let singular = variant.trim_end_matches('s');
            let group = groups.get(singular).unwrap_or_else(|| {
                panic!("kube_watch.rs watches {variant}; no k8s_openapi import names {singular}")
            });
            (group.clone(), variant.to_lowercase())
        })
        .collect();
    assert!(out.len() >= 5, "kube_watch.rs kinds: {out:?}");
    out
}

fn between<'a>(s: &'a str, start: &str, end: &str) -> Option<&'a str> {
    let from = s.find(start)? + start.len();
    let to = s[from..].find(end)? + from;
    Some(&s[from..to])
}

#[test]
fn chart_lints_and_renders_with_default_values() {
    let o = run(Command::new(helm()).args(["lint", "--strict"]).arg(chart()));
    assert_ok(&o, "helm lint --strict (default values)");
    let manifest = render_ok(&[], &[]);
    let objs = objects(&manifest);
    check_rendered(&objs);
    // Monitoring objects only behind their flags.
    for kind in ["ServiceMonitor", "PrometheusRule"] {
        assert!(
            !objs.iter().any(|o| o["kind"] == kind),
            "{kind} without its flag"
        );
    }
    assert_ok(&validate(&manifest), "validating the default render");
}

#[test]
fn chart_renders_production_values() {
    let o = run(Command::new(helm())
        .args(["lint", "--strict"])
        .arg(chart())
        .arg("--values")
        .arg(&production()[0]));
    assert_ok(&o, "helm lint --strict (production values)");
    let manifest = render_ok(&production(), &[]);
    let objs = objects(&manifest);
    check_rendered(&objs);
    assert_eq!(
        find(&objs, "Deployment", "sluice-writer")["spec"]["replicas"],
        6
    );
    assert_eq!(
        find(&objs, "Deployment", "sluice-query")["spec"]["replicas"],
        3
    );
    find(&objs, "PodDisruptionBudget", "sluice-query");

    let sm = find(&objs, "ServiceMonitor", "sluice");
    assert_eq!(sm["metadata"]["labels"]["release"], "kube-prometheus-stack");
    let ep = &sm["spec"]["endpoints"][0];
    assert_eq!(ep["port"], "http");
    assert_eq!(ep["path"], "/metrics");
    assert_eq!(ep["relabelings"][0]["targetLabel"], "job");
    find(&objs, "PrometheusRule", "sluice");
    let dash = find(&objs, "ConfigMap", "sluice-dashboard");
    assert_eq!(dash["metadata"]["labels"]["grafana_dashboard"], "1");
    let shipped: Value =
        serde_json::from_str(str_of(&dash["data"]["sluice.json"])).expect("dashboard JSON");
    let file: Value = serde_json::from_str(&read(&repo("deploy/grafana/sluice-dashboard.json")))
        .expect("deploy/grafana/sluice-dashboard.json");
    assert_eq!(shipped, file, "the ConfigMap does not ship the dashboard");

    // Kafka over SASL_SSL with the CA from a Secret, mounted where the
    // configuration says.
    let config = rendered_config(&objs);
    let props = &config["kafka"]["properties"];
    assert_eq!(props["security.protocol"].as_str(), Some("SASL_SSL"));
    assert_eq!(props["sasl.mechanism"].as_str(), Some("SCRAM-SHA-512"));
    let ca = props["ssl.ca.location"].as_str().expect("ssl.ca.location");
    for (_, name, spec) in workloads(&objs) {
        let c = &spec["containers"][0];
        assert!(
            array(&c["volumeMounts"])
                .iter()
                .any(|m| ca.starts_with(str_of(&m["mountPath"])) && m["name"] == "kafka-tls"),
            "{name} does not mount the Kafka CA at {ca}"
        );
        assert_eq!(spec["imagePullSecrets"][0]["name"], "registry-credentials");
        assert_eq!(
            c["image"], "registry.example.com/platform/sluice:0.1.0",
            "{name}"
        );
    }
    assert_ok(&validate(&manifest), "validating the production render");
}

/// The generated sluice.toml of a render, parsed.
fn rendered_config(objs: &[Value]) -> toml::Value {
    let secret = find(objs, "Secret", "sluice-config");
    let text = str_of(&secret["stringData"]["sluice.toml"]);
    toml::from_str(text).unwrap_or_else(|e| panic!("the rendered sluice.toml: {e}\n{text}"))
}

/// Placeholder values for what pods read from Secrets and the downward API.
fn stand_in(var: &str) -> String {
    match var {
        "SLUICE_CATALOG__URI" => "postgres://sluice:pw@postgres:5432/iceberg".into(),
        "SLUICE_CATALOG__TOKEN" => "catalog-token".into(),
        "SLUICE_CATALOG__CREDENTIAL" => "client:secret".into(),
        "SLUICE_QUERY__TOKENS" => "[{token=\"t0ken-for-deploy-tests\", role=\"admin\"}]".into(),
        "SLUICE_COLLECTOR__INTAKE_TOKENS" => "[\"intake-t0ken-for-tests\"]".into(),
        "SLUICE_WAREHOUSE__S3__ACCESS_KEY_ID" => "AKIAEXAMPLE".into(),
        "SLUICE_WAREHOUSE__S3__SECRET_ACCESS_KEY" => "s3cr3t/example".into(),
        "NODE_NAME" => "node-1".into(),
        other => panic!("no stand-in for {other}: add one to tests/deploy.rs"),
    }
}

/// Runs `sluice config` as a container would (its environment, the rendered
/// configuration at SLUICE_CONFIG) and checks the arguments parse; returns the
/// effective configuration.
fn effective_config(
    what: &str,
    container: &Value,
    config_file: &Path,
    mounted_config: &str,
) -> toml::Value {
    let mut env = BTreeMap::new();
    for e in array(&container["env"]) {
        let name = str_of(&e["name"]).to_string();
        let value = match e["value"].as_str() {
            Some(v) if name == "SLUICE_CONFIG" => {
                assert_eq!(v, mounted_config, "{what}: SLUICE_CONFIG");
                config_file.display().to_string()
            }
            Some(v) => v.to_string(),
            None => stand_in(&name),
        };
        env.insert(name, value);
    }
    let sluice = env!("CARGO_BIN_EXE_sluice");
    let home = tempfile::tempdir().expect("temp dir");
    let o = run(Command::new(sluice)
        .arg("config")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(&env)
        .current_dir(home.path()));
    let out = assert_ok(
        &o,
        &format!("{what}: sluice config with the pod's environment"),
    );
    // The role and its flags as the container passes them.
    let args: Vec<&str> = array(&container["args"]).iter().map(str_of).collect();
    if !args.is_empty() {
        let o = run(Command::new(sluice)
            .args(&args)
            .arg("--help")
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default()));
        assert_ok(&o, &format!("{what}: sluice {} --help", args.join(" ")));
    }
    toml::from_str(&out).unwrap_or_else(|e| panic!("{what}: `sluice config` output: {e}\n{out}"))
}

fn check_configs_of(objs: &[Value], expect_catalog: &str) {
    let dir = tempfile::tempdir().expect("temp dir");
    let secret = find(objs, "Secret", "sluice-config");
    let file = write_temp(
        dir.path(),
        "sluice.toml",
        str_of(&secret["stringData"]["sluice.toml"]),
    );
    for (kind, name, spec) in workloads(objs) {
        for c in array(&spec["containers"]) {
            let what = format!("{kind} {name}");
            let cfg = effective_config(&what, c, &file, "/etc/sluice/config/sluice.toml");
            let port = array(&c["ports"])
                .iter()
                .find(|p| p["name"] == "http")
                .and_then(|p| p["containerPort"].as_u64())
                .expect("http port");
            assert_eq!(
                cfg["http"]["addr"].as_str(),
                Some(format!("0.0.0.0:{port}").as_str()),
                "{what}: the probes and Services use port {port}"
            );
            assert_eq!(
                cfg["catalog"]["kind"].as_str(),
                Some(expect_catalog),
                "{what}"
            );
            let mounts: Vec<&str> = array(&c["volumeMounts"])
                .iter()
                .map(|m| str_of(&m["mountPath"]))
                .collect();
            let mounted = |p: &str| mounts.iter().any(|m| Path::new(p).starts_with(m));
            let data_dir = cfg["data_dir"].as_str().expect("data_dir");
            assert!(
                mounted(data_dir),
                "{what}: data_dir {data_dir} is not a volume"
            );
            if let Some(dir) = cfg["enrich"].get("directory").and_then(|d| d.as_str()) {
                assert!(
                    mounted(dir),
                    "{what}: the principal directory {dir} is not mounted"
                );
            }
            if name.ends_with("sluice-collector") {
                let root = cfg["collector"]["pods_root"].as_str().expect("pods_root");
                assert!(mounted(root), "{what}: pods_root {root} is not mounted");
            }
            if name.ends_with("sluice-query") {
                assert!(
                    cfg["query"]["tokens"]
                        .as_array()
                        .is_some_and(|t| !t.is_empty()),
                    "{what}: `sluice serve` refuses 0.0.0.0 without tokens"
                );
            }
            if name.ends_with("sluice-collector") || name.ends_with("sluice-collector-watch") {
                assert!(
                    cfg["collector"]["intake_tokens"]
                        .as_array()
                        .is_some_and(|t| !t.is_empty()),
                    "{what}: `sluice collect` refuses to serve the intake on 0.0.0.0 without tokens"
                );
            }
        }
    }
}

#[test]
fn rendered_configuration_loads_in_sluice() {
    check_configs_of(&objects(&render_ok(&[], &[])), "rest");
    check_configs_of(&objects(&render_ok(&production(), &[])), "postgres");
    // The REST catalog with OAuth2 client credentials and a self-hosted store.
    let sets = [
        "catalog.rest.existingSecret=iceberg-rest",
        "catalog.rest.credentialKey=credential",
        "warehouse.s3.endpoint=http://minio.minio:9000",
        "warehouse.s3.pathStyle=true",
        "warehouse.s3.existingSecret=minio-keys",
        "kafka.sasl.enabled=true",
        "kafka.sasl.mechanism=PLAIN",
        "kafka.sasl.username=u",
        "kafka.sasl.password=p",
    ];
    let objs = objects(&render_ok(&[], &sets));
    check_configs_of(&objs, "rest");
    let cfg = rendered_config(&objs);
    assert_eq!(cfg["warehouse"]["s3"]["path_style"].as_bool(), Some(true));
    assert_eq!(
        cfg["kafka"]["properties"]["security.protocol"].as_str(),
        Some("SASL_PLAINTEXT")
    );
    // Tenants and OIDC tokens from values.
    let dir = tempfile::tempdir().expect("temp dir");
    let tenants = write_temp(
        dir.path(),
        "tenants.yaml",
        "tenants:\n  - name: acme\n    namespaces: [acme, \"acme-*\"]\n    services: [acme-gateway]\n    maxConcurrent: 3\n  - name: globex\n    namespaces: [globex]\nquery:\n  jwt:\n    issuer: https://login.example.com/\n    audiences: [sluice]\n    jwksUrl: https://login.example.com/.well-known/jwks.json\n",
    );
    let objs = objects(&render_ok(&[tenants], &[]));
    check_configs_of(&objs, "rest");
    let cfg = rendered_config(&objs);
    assert_eq!(cfg["tenants"][0]["name"].as_str(), Some("acme"));
    assert_eq!(cfg["tenants"][0]["max_concurrent"].as_integer(), Some(3));
    assert_eq!(cfg["tenants"][1]["namespaces"][0].as_str(), Some("globex"));
    assert_eq!(
        cfg["query"]["jwt"]["issuer"].as_str(),
        Some("https://login.example.com/")
    );
    // Two tenants owning one namespace: the chart renders it, sluice refuses it.
    let overlap = write_temp(
        dir.path(),
        "overlap.yaml",
        "tenants:\n  - name: a\n    namespaces: [\"team-*\"]\n  - name: b\n    namespaces: [\"*-prod\"]\n",
    );
    let objs = objects(&render_ok(&[overlap], &[]));
    let secret = find(&objs, "Secret", "sluice-config");
    let file = write_temp(
        dir.path(),
        "overlap.toml",
        str_of(&secret["stringData"]["sluice.toml"]),
    );
    let o = run(Command::new(env!("CARGO_BIN_EXE_sluice"))
        .arg("config")
        .env_clear()
        .env("SLUICE_CONFIG", &file));
    assert!(
        !o.status.success() && text(&o).contains("at most one tenant"),
        "{}",
        text(&o)
    );
    // A configuration sluice refuses is caught: a misspelt setting.
    let bad = write_temp(dir.path(), "bad.toml", "[collector]\npods_rot = \"/x\"\n");
    let o = run(Command::new(env!("CARGO_BIN_EXE_sluice"))
        .arg("config")
        .env_clear()
        .env("SLUICE_CONFIG", &bad));
    assert!(
        !o.status.success(),
        "sluice accepted a misspelt setting:\n{}",
        text(&o)
    );
}

#[test]
fn chart_refuses_values_that_cannot_work() {
    let cases: [(&[&str], &str); 6] = [
        (
            &["writer.replicas=7"],
            "writer.replicas (7) > kafka.partitions (6)",
        ),
        (&["kafka.tls.enabled=true"], "kafka.tls.existingSecret"),
        (&["kafka.sasl.enabled=true"], "kafka.sasl.username"),
        (&["warehouse.location=file:///data"], "object store"),
        (&["writer.replica=2"], "replica"),
        (&["catalog.kind=sqlite"], "catalog"),
    ];
    for (sets, expect) in cases {
        match render(&[], sets) {
            Ok(_) => panic!("helm template accepted {sets:?}"),
            Err(e) => assert!(e.contains(expect), "{sets:?}: expected {expect:?} in:\n{e}"),
        }
    }
    // The limit moves with the partitions.
    render_ok(&[], &["writer.replicas=7", "kafka.partitions=8"]);
}

#[test]
fn validation_rejects_broken_objects() {
    let objs = objects(&render_ok(&production(), &[]));
    let mutate = |kind: &str, f: &dyn Fn(&mut Value)| {
        let mut objs = objs.clone();
        let o = objs
            .iter_mut()
            .find(|o| o["kind"] == kind)
            .unwrap_or_else(|| panic!("no {kind}"));
        f(o);
        to_yaml(&objs)
    };
    let cases: Vec<(String, &str)> = vec![
        (
            mutate("Deployment", &|o| o["spec"]["replicas"] = json!("two")),
            "replicas",
        ),
        (
            mutate("DaemonSet", &|o| {
                o["spec"]["template"]["spec"]["containers"][0]["imagePullPolicyy"] = json!("Always")
            }),
            "imagePullPolicyy",
        ),
        (
            mutate("ServiceMonitor", &|o| {
                o["spec"]["endpoints"][0]["scrapeEvery"] = json!("30s")
            }),
            "scrapeEvery",
        ),
        (
            mutate("PrometheusRule", &|o| {
                o["spec"]["groups"][0]["rules"] = json!("none")
            }),
            "rules",
        ),
        (
            mutate("ClusterRole", &|o| o["rules"][0]["verbs"] = json!("get")),
            "verbs",
        ),
    ];
    for (manifest, field) in cases {
        let o = validate(&manifest);
        assert!(!o.status.success(), "a broken {field} passed validation");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            err.contains(field),
            "the error does not name {field}:\n{err}"
        );
    }
}

// ------------------------------------------------------------------ compose

#[test]
fn compose_stack_validates_and_its_configuration_loads() {
    let file = repo("deploy/compose/compose.yaml");
    let o = check_py(&["compose", file.to_str().expect("utf-8")]);
    assert_ok(&o, "compose file against the compose specification");

    // Compose applies YAML merge keys (`<<: *sluice`); so does this reading.
    let mut yaml: serde_yaml_ng::Value =
        serde_yaml_ng::from_str(&read(&file)).expect("compose YAML");
    yaml.apply_merge().expect("merge keys");
    let doc: Value = serde_json::to_value(&yaml).expect("compose as JSON");
    let services = doc["services"].as_object().expect("services");
    for want in [
        "kafka",
        "minio",
        "iceberg-rest",
        "collector",
        "writer",
        "indexer",
        "query",
    ] {
        assert!(services.contains_key(want), "no {want} service");
    }
    // Kafka in KRaft mode, no ZooKeeper.
    let kafka = &doc["services"]["kafka"]["environment"];
    assert_eq!(kafka["KAFKA_PROCESS_ROLES"], "broker,controller");
    assert!(!services.keys().any(|k| k.contains("zookeeper")));
    // The image comes from deploy/Dockerfile with the repository as context.
    let build = services
        .values()
        .find_map(|s| s.get("build"))
        .expect("a service builds the sluice image");
    let context = file.parent().expect("dir").join(str_of(&build["context"]));
    assert_eq!(
        context
            .join(str_of(&build["dockerfile"]))
            .canonicalize()
            .ok(),
        repo("deploy/Dockerfile").canonicalize().ok(),
        "the compose build is not deploy/Dockerfile"
    );

    // A sluice service that names a configuration file mounts it.
    for (name, svc) in services {
        if svc["image"] != "sluice:dev" {
            continue;
        }
        if let Some(config) = svc["environment"]["SLUICE_CONFIG"].as_str() {
            assert!(
                array(&svc["volumes"])
                    .iter()
                    .filter_map(|v| v.as_str())
                    .any(|v| v.ends_with(&format!(":{config}:ro"))
                        || v.ends_with(&format!(":{config}"))),
                "compose service {name} sets SLUICE_CONFIG={config} but does not mount it"
            );
        }
    }

    // Every sluice service's configuration loads, and names services that exist.
    let dir = tempfile::tempdir().expect("temp dir");
    let mut checked = 0;
    for (name, svc) in services {
        let Some(config) = array(&svc["volumes"])
            .iter()
            .filter_map(|v| v.as_str())
            .find(|v| v.ends_with(":/etc/sluice/sluice.toml:ro"))
        else {
            continue;
        };
        let host = file
            .parent()
            .expect("dir")
            .join(config.split(':').next().expect("source"));
        let text = read(&host);
        let path = write_temp(dir.path(), &format!("{name}.toml"), &text);
        let env: Vec<Value> = svc["environment"]
            .as_object()
            .expect("environment map")
            .iter()
            .map(|(k, v)| {
                let v = if k == "SLUICE_CONFIG" {
                    json!("/etc/sluice/sluice.toml")
                } else {
                    json!(
                        v.as_str()
                            .map(str::to_string)
                            .unwrap_or_else(|| v.to_string())
                    )
                };
                json!({"name": k, "value": v})
            })
            .collect();
        let container = json!({"env": env, "args": svc["command"]});
        let cfg = effective_config(
            &format!("compose service {name}"),
            &container,
            &path,
            "/etc/sluice/sluice.toml",
        );
        let host_of = |url: &str| -> String {
            let rest = url.split("://").nth(1).unwrap_or(url);
            rest.split([':', '/']).next().unwrap_or("").to_string()
        };
        for url in [
            cfg["kafka"]["bootstrap"].as_str().expect("bootstrap"),
            cfg["catalog"]["uri"].as_str().expect("catalog uri"),
            cfg["warehouse"]["s3"]["endpoint"]
                .as_str()
                .expect("s3 endpoint"),
        ] {
            let host = host_of(url);
            assert!(
                services.contains_key(&host),
                "{name}: {url} names no service"
            );
        }
        if name == "query" {
            assert!(
                cfg["query"]["tokens"]
                    .as_array()
                    .is_some_and(|t| !t.is_empty()),
                "the query service listens on 0.0.0.0 and needs tokens"
            );
        }
        checked += 1;
    }
    assert!(
        checked >= 4,
        "only {checked} sluice services mount the configuration"
    );

    // A broken compose file fails the same check.
    let mut broken = doc.clone();
    broken["services"]["writer"]["imagee"] = json!("sluice:dev");
    let bad = write_temp(
        dir.path(),
        "broken.yaml",
        &serde_yaml_ng::to_string(&broken).expect("YAML"),
    );
    let o = check_py(&["compose", bad.to_str().expect("utf-8")]);
    assert!(
        !o.status.success(),
        "a compose service with `imagee` passed"
    );
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("imagee"),
        "{}",
        text(&o)
    );
}

// ------------------------------------------------------------------ Dockerfile

#[derive(Debug)]
struct Instruction {
    op: String,
    args: String,
}

struct Stage {
    from: String,
    name: String,
    body: Vec<Instruction>,
}

/// Instructions of a Dockerfile (continuations joined, comments dropped):
/// the ARGs before the first FROM, then the stages.
fn dockerfile(text: &str) -> (BTreeMap<String, String>, Vec<Stage>) {
    let mut lines = Vec::new();
    let mut cur = String::new();
    for line in text.lines() {
        let t = line.trim();
        if t.starts_with('#') || (t.is_empty() && cur.is_empty()) {
            continue;
        }
        if let Some(head) = t.strip_suffix('\\') {
            cur.push_str(head);
            cur.push(' ');
            continue;
        }
        cur.push_str(t);
        if !cur.trim().is_empty() {
            lines.push(std::mem::take(&mut cur));
        }
        cur.clear();
    }
    let mut args = BTreeMap::new();
    let mut stages: Vec<Stage> = Vec::new();
    for l in lines {
        let (op, rest) = l.split_once(' ').unwrap_or((&l, ""));
        let ins = Instruction {
            op: op.to_uppercase(),
            args: rest.split_whitespace().collect::<Vec<_>>().join(" "),
        };
        if ins.op == "FROM" {
            let mut words = ins.args.split_whitespace();
            let from = words.next().unwrap_or("").to_string();
            let name = match (words.next(), words.next()) {
                (Some(a), Some(n)) if a.eq_ignore_ascii_case("as") => n.to_string(),
                _ => String::new(),
            };
            stages.push(Stage {
                from,
                name,
                body: Vec::new(),
            });
        } else if let Some(s) = stages.last_mut() {
            s.body.push(ins);
        } else if ins.op == "ARG" {
            let (k, v) = ins.args.split_once('=').unwrap_or((&ins.args, ""));
            args.insert(k.to_string(), v.to_string());
        }
    }
    (args, stages)
}

fn expand(s: &str, args: &BTreeMap<String, String>) -> String {
    let mut out = s.to_string();
    for (k, v) in args {
        out = out
            .replace(&format!("${{{k}}}"), v)
            .replace(&format!("${k}"), v);
    }
    out
}

/// The command of a RUN without its BuildKit flags (--mount=…).
fn run_command(args: &str) -> String {
    args.split_whitespace()
        .skip_while(|w| w.starts_with("--"))
        .collect::<Vec<_>>()
        .join(" ")
}

fn dockerfile_problems(text: &str) -> Vec<String> {
    let mut problems = Vec::new();
    let (args, stages) = dockerfile(text);
    let Some(build) = stages.iter().find(|s| s.name == "build") else {
        return vec!["no stage named build".into()];
    };
    // The build stage compiles with scripts/build-release, and only with it.
    let release = String::from_utf8_lossy(
        &run(Command::new(repo("scripts/build-release")).arg("--print")).stdout,
    )
    .trim()
    .to_string();
    if release != "cargo build --release --locked --bin sluice" {
        problems.push(format!("scripts/build-release --print says {release:?}"));
    }
    let runs: Vec<String> = build
        .body
        .iter()
        .filter(|i| i.op == "RUN")
        .map(|i| run_command(&i.args))
        .collect();
    let builds: Vec<&String> = runs
        .iter()
        .filter(|r| r.starts_with("scripts/build-release"))
        .collect();
    if builds.len() != 1 {
        problems.push(format!(
            "the build stage should RUN scripts/build-release once; its RUNs: {runs:?}"
        ));
    }
    for s in &stages {
        for i in s.body.iter().filter(|i| i.op == "RUN") {
            let cmd = run_command(&i.args);
            if cmd
                .split_whitespace()
                .any(|w| w == "cargo" || w == "rustc" || w == "rustup")
            {
                problems.push(format!(
                    "stage {:?} compiles outside scripts/build-release: RUN {cmd}",
                    s.name
                ));
            }
        }
    }
    // What the build needs is in the context it copies.
    let manifest: toml::Value = toml::from_str(&read(&repo("Cargo.toml"))).expect("Cargo.toml");
    let copied: Vec<String> = build
        .body
        .iter()
        .filter(|i| i.op == "COPY")
        .flat_map(|i| {
            let words: Vec<&str> = i.args.split_whitespace().collect();
            words[..words.len().saturating_sub(1)]
                .iter()
                .map(|w| w.to_string())
                .collect::<Vec<_>>()
        })
        .collect();
    let mut needed: Vec<String> = vec![
        "Cargo.toml".into(),
        "Cargo.lock".into(),
        "src".into(),
        "scripts/build-release".into(),
    ];
    for m in manifest["workspace"]["members"]
        .as_array()
        .expect("members")
    {
        let m = m.as_str().expect("member");
        if m != "." {
            needed.push(m.to_string());
        }
    }
    for b in manifest
        .get("bench")
        .and_then(|b| b.as_array())
        .into_iter()
        .flatten()
    {
        let name = b["name"].as_str().expect("bench name");
        let path = b
            .get("path")
            .and_then(|p| p.as_str())
            .map(str::to_string)
            .unwrap_or(format!("benches/{name}.rs"));
        needed.push(path.split('/').next().expect("dir").to_string());
    }
    // Patched dependencies (vendor/README.md).
    for registry in manifest
        .get("patch")
        .and_then(|p| p.as_table())
        .into_iter()
        .flat_map(|p| p.values())
    {
        for dep in registry.as_table().into_iter().flat_map(|r| r.values()) {
            if let Some(path) = dep.get("path").and_then(|p| p.as_str()) {
                needed.push(path.split('/').next().expect("dir").to_string());
            }
        }
    }
    for n in needed {
        if !copied.iter().any(|c| c == &n || c == ".") {
            problems.push(format!("the build stage does not COPY {n}"));
        }
    }
    // CI's toolchain and Debian release.
    let rust = args.get("RUST_VERSION").cloned().unwrap_or_default();
    let rustc = String::from_utf8_lossy(&run(Command::new("rustc").arg("--version")).stdout)
        .split_whitespace()
        .nth(1)
        .unwrap_or("")
        .to_string();
    if !rustc.starts_with(&format!("{rust}.")) {
        problems.push(format!(
            "ARG RUST_VERSION={rust}, CI builds with rustc {rustc}: make them the same"
        ));
    }
    let msrv = manifest["workspace"]["package"]["rust-version"]
        .as_str()
        .unwrap_or("");
    let num = |v: &str| -> Vec<u32> { v.split('.').filter_map(|p| p.parse().ok()).collect() };
    if num(&rust) < num(msrv) {
        problems.push(format!(
            "ARG RUST_VERSION={rust} is below rust-version {msrv}"
        ));
    }
    let debian = args.get("DEBIAN_RELEASE").cloned().unwrap_or_default();
    let ci = read(Path::new("/etc/os-release"))
        .lines()
        .find_map(|l| l.strip_prefix("VERSION_CODENAME=").map(str::to_string))
        .unwrap_or_default();
    if debian != ci {
        problems.push(format!(
            "ARG DEBIAN_RELEASE={debian}, CI runs on Debian {ci}: make them the same"
        ));
    }
    let builder = expand(&build.from, &args);
    if builder != format!("rust:{rust}-{debian}") {
        problems.push(format!("the build stage is FROM {builder}"));
    }
    let Some(runtime) = stages.last() else {
        return problems;
    };
    let base = expand(&runtime.from, &args);
    if base != format!("debian:{debian}-slim") {
        problems.push(format!(
            "the runtime stage is FROM {base}, not the builder's Debian ({debian})"
        ));
    }
    // Unprivileged, and the binary from the build stage.
    match runtime.body.iter().rev().find(|i| i.op == "USER") {
        Some(u)
            if u.args
                .split(':')
                .next()
                .and_then(|n| n.parse::<u32>().ok())
                .unwrap_or(0)
                > 0 => {}
        other => problems.push(format!(
            "the runtime stage does not end as a numeric non-root USER: {other:?}"
        )),
    }
    if !runtime
        .body
        .iter()
        .any(|i| i.op == "COPY" && i.args.starts_with("--from=build /out/sluice "))
    {
        problems.push("the runtime stage does not COPY --from=build /out/sluice".into());
    }
    if !runtime
        .body
        .iter()
        .any(|i| i.op == "ENTRYPOINT" && i.args.contains("sluice"))
    {
        problems.push("no ENTRYPOINT running sluice".into());
    }
    // Every library the binary links comes with the runtime image.
    let installed: BTreeSet<String> = runtime
        .body
        .iter()
        .filter(|i| i.op == "RUN")
        .flat_map(|i| {
            i.args
                .split("&&")
                .filter(|c| c.contains("apt-get install"))
                .flat_map(|c| c.split_whitespace().skip_while(|w| *w != "install").skip(1))
                .filter(|w| !w.starts_with('-'))
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .collect();
    for pkg in linked_packages() {
        // glibc and libgcc are in every Debian image.
        if !["libc6", "libgcc-s1"].contains(&pkg.as_str()) && !installed.contains(&pkg) {
            problems.push(format!(
                "sluice links a library of Debian's {pkg}; the runtime stage installs only {installed:?}"
            ));
        }
    }
    problems
}

/// Debian packages holding the shared libraries the sluice binary links.
fn linked_packages() -> BTreeSet<String> {
    let o = run(Command::new("ldd").arg(env!("CARGO_BIN_EXE_sluice")));
    let out = assert_ok(&o, "ldd sluice");
    let mut pkgs = BTreeSet::new();
    for line in out.lines() {
        let Some((_, path)) = line.split_once("=>") else {
            continue;
        };
        let Some(path) = path
            .split_whitespace()
            .next()
            .filter(|p| p.starts_with('/'))
        else {
            panic!("ldd: a library is not found: {line}");
        };
        // With the merged /usr, ldd may name /lib/… where the package
        // installed /usr/lib/… (libssl3), or the other way round (zlib1g).
        let other = match path.strip_prefix("/usr") {
            Some(rest) => rest.to_string(),
            None => format!("/usr{path}"),
        };
        let mut o = run(Command::new("dpkg").args(["-S", path]));
        if !o.status.success() {
            o = run(Command::new("dpkg").args(["-S", &other]));
        }
        let s = assert_ok(
            &o,
            &format!("dpkg -S {path} or {other} (which package has it)"),
        );
        let pkg = s.split(':').next().unwrap_or("").trim().to_string();
        pkgs.insert(pkg);
    }
    assert!(pkgs.contains("libc6"), "ldd found no glibc: {out}");
    pkgs
}

#[test]
fn dockerfile_builds_the_way_ci_builds() {
    let text = read(&repo("deploy/Dockerfile"));
    let problems = dockerfile_problems(&text);
    assert!(
        problems.is_empty(),
        "deploy/Dockerfile:\n{}",
        problems.join("\n")
    );

    // The checks fail on drift: another build command, a missing member, a
    // runtime without a linked library, another toolchain.
    for (from, to, expect) in [
        (
            "scripts/build-release --out /out",
            "cargo build --release --bin sluice && mkdir /out",
            "compiles outside scripts/build-release",
        ),
        ("COPY ingest ingest\n", "", "does not COPY ingest"),
        ("COPY vendor vendor\n", "", "does not COPY vendor"),
        (
            "ca-certificates libssl3 zlib1g",
            "ca-certificates libssl3",
            "zlib1g",
        ),
        // librdkafka is built with OpenSSL.
        (
            "ca-certificates libssl3 zlib1g",
            "ca-certificates zlib1g",
            "libssl3",
        ),
        ("ARG RUST_VERSION=", "ARG RUST_VERSION=1", "RUST_VERSION"),
        ("USER 10001:10001", "USER root", "non-root USER"),
    ] {
        assert!(text.contains(from), "the Dockerfile no longer has {from:?}");
        let problems = dockerfile_problems(&text.replace(from, to));
        assert!(
            problems.iter().any(|p| p.contains(expect)),
            "replacing {from:?} by {to:?} went unnoticed: {problems:?}"
        );
    }

    // The scripts CI runs use the lockfile as the release build does.
    let test = read(&repo("scripts/test"));
    for line in test.lines().filter(|l| {
        let l = l.trim_start();
        l.starts_with("cargo ")
            && ["build", "test", "clippy", "bench"]
                .iter()
                .any(|c| l.contains(c))
    }) {
        assert!(
            line.contains("--locked"),
            "scripts/test runs cargo without --locked: {line}"
        );
    }
}

// ------------------------------------------------------------------ Prometheus

fn prometheus_rule_manifest() -> String {
    render_ok(&[], &["metrics.prometheusRule.enabled=true"])
}

#[test]
fn prometheus_rules_pass_promtool_and_their_unit_tests() {
    let dir = tempfile::tempdir().expect("temp dir");
    let manifest = write_temp(dir.path(), "manifest.yaml", &prometheus_rule_manifest());
    let o = check_py(&[
        "rules",
        manifest.to_str().expect("utf-8"),
        dir.path().to_str().expect("utf-8"),
    ]);
    let count: usize = assert_ok(&o, "extracting the PrometheusRule")
        .trim()
        .parse()
        .expect("rule count");
    assert!(count >= 10, "only {count} rules");

    let full = dir.path().join("sluice-rules-full.yaml");
    let o = run(Command::new(promtool()).args(["check", "rules"]).arg(&full));
    assert_ok(&o, "promtool check rules (as the chart renders them)");
    let o = run(Command::new(promtool())
        .args(["check", "rules"])
        .arg(repo("deploy/prometheus/sluice-rules.yaml")));
    assert_ok(
        &o,
        "promtool check rules deploy/prometheus/sluice-rules.yaml",
    );

    // The unit tests, next to the rendered rules they name.
    let tests = read(&repo("tests/deploy/rules-test.yaml"));
    let test_file = write_temp(dir.path(), "rules-test.yaml", &tests);
    let o = run(Command::new(promtool())
        .args(["test", "rules"])
        .arg(&test_file));
    assert_ok(&o, "promtool test rules tests/deploy/rules-test.yaml");

    // Every alert has a test in which it fires.
    let rules: Value = serde_yaml_ng::from_str(&read(&full)).expect("rules");
    let cases: Value = serde_yaml_ng::from_str(&tests).expect("rules-test.yaml");
    let fired: BTreeSet<&str> = array(&cases["tests"])
        .iter()
        .flat_map(|t| array(&t["alert_rule_test"]))
        .filter(|a| !array(&a["exp_alerts"]).is_empty())
        .map(|a| str_of(&a["alertname"]))
        .collect();
    for g in array(&rules["groups"]) {
        for r in array(&g["rules"]) {
            let alert = str_of(&r["alert"]);
            assert!(fired.contains(alert), "no unit test in which {alert} fires");
            assert!(
                r["labels"]["severity"].is_string(),
                "{alert} has no severity"
            );
            assert!(
                r["annotations"]["summary"].is_string()
                    && r["annotations"]["description"].is_string(),
                "{alert} lacks a summary or description"
            );
        }
    }

    // A rule whose expression does not parse fails promtool.
    let broken = read(&full).replace("> 0.01", "> > 0.01");
    let bad = write_temp(dir.path(), "broken.yaml", &broken);
    let o = run(Command::new(promtool()).args(["check", "rules"]).arg(&bad));
    assert!(!o.status.success(), "promtool accepted a broken expression");

    // The copies outside the chart are the chart's.
    for (copy, original) in [
        (
            "deploy/prometheus/sluice-rules.yaml",
            "deploy/helm/sluice/files/sluice-rules.yaml",
        ),
        (
            "deploy/grafana/sluice-dashboard.json",
            "deploy/helm/sluice/files/sluice-dashboard.json",
        ),
    ] {
        assert!(
            read(&repo(copy)) == read(&repo(original)),
            "{copy} differs from {original}: copy the chart's file over it"
        );
    }
}

/// A metric family as the code registers it.
#[derive(Debug)]
struct Family {
    name: String,
    kind: &'static str,
    labels: BTreeSet<String>,
}

/// Every metric family `sub_registry_with_prefix(…)` + `.register(…)` calls
/// create in the Rust sources, typed from the registered field or variable.
fn registered_families() -> Vec<Family> {
    let mut files = Vec::new();
    for dir in [
        "src",
        "schema/src",
        "warehouse/src",
        "ingest/src",
        "query/src",
    ] {
        collect_rs(&repo(dir), &mut files);
    }
    let sources: Vec<(PathBuf, String)> = files
        .into_iter()
        .map(|f| {
            let t = read(&f);
            (f, t)
        })
        .collect();
    // Label sets: the fields of every struct in the sources, by name.
    let mut structs: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (_, text) in &sources {
        let mut rest = text.as_str();
        while let Some(at) = rest.find("struct ") {
            rest = &rest[at + 7..];
            let name: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            let after = rest[name.len()..].trim_start();
            if let Some(body) = after
                .strip_prefix('{')
                .and_then(|b| b.split_once('}'))
                .map(|(b, _)| b)
            {
                let fields = body
                    .lines()
                    .map(str::trim)
                    .filter(|l| !l.starts_with("//") && !l.starts_with('#'))
                    .filter_map(|l| {
                        l.split_once(':')
                            .map(|(f, _)| f.trim().trim_start_matches("pub ").trim().to_string())
                    })
                    .filter(|f| !f.is_empty() && f.chars().all(|c| c.is_alphanumeric() || c == '_'))
                    .collect();
                structs.insert(name, fields);
            }
        }
    }
    let mut out = Vec::new();
    for (file, text) in &sources {
        let prefixes: Vec<(usize, String)> = text
            .match_indices("sub_registry_with_prefix(")
            .filter_map(|(at, m)| string_literal(&text[at + m.len()..]).map(|(s, _)| (at, s)))
            .collect();
        for (at, m) in text.match_indices(".register(") {
            let args = &text[at + m.len()..];
            let Some((name, rest)) = string_literal(args) else {
                continue; // not a metric (e.g. tantivy's tokenizer registry)
            };
            let prefix = prefixes
                .iter()
                .rev()
                .find(|(p, _)| *p < at)
                .map(|(_, s)| s.clone())
                .unwrap_or_else(|| {
                    panic!(
                        "{}: metric {name} registered without a prefix",
                        file.display()
                    )
                });
            let rest = rest
                .trim_start()
                .strip_prefix(',')
                .expect("register(name, help, metric)");
            let (_, rest) = string_literal(rest)
                .unwrap_or_else(|| panic!("{}: help of {name}", file.display()));
            let rest = rest
                .trim_start()
                .strip_prefix(',')
                .expect("register(name, help, metric)");
            let mut depth = 0;
            let end = rest
                .char_indices()
                .find(|(_, c)| {
                    match c {
                        '(' => depth += 1,
                        ')' if depth == 0 => return true,
                        ')' => depth -= 1,
                        _ => {}
                    }
                    false
                })
                .map(|(i, _)| i)
                .expect("closing parenthesis");
            let expr = rest[..end].trim().trim_end_matches(',').trim();
            let ident = expr
                .trim_end_matches(".clone()")
                .rsplit('.')
                .next()
                .unwrap_or(expr)
                .trim();
            let ty = type_of(text, ident).unwrap_or_else(|| {
                panic!(
                    "{}: cannot tell the type of {ident}, registered as {name}",
                    file.display()
                )
            });
            let kind = if ty.contains("Histogram") {
                "histogram"
            } else if ty.contains("Counter") {
                "counter"
            } else if ty.contains("Gauge") {
                "gauge"
            } else {
                panic!(
                    "{}: {name} has type {ty}, which is no counter, gauge or histogram",
                    file.display()
                )
            };
            let labels = match ty.trim().strip_prefix("Family<") {
                Some(generic) => {
                    let label = generic.split(',').next().unwrap_or("").trim();
                    structs.get(label).cloned().unwrap_or_else(|| {
                        panic!("{}: label set {label} of {name} not found", file.display())
                    })
                }
                None => BTreeSet::new(),
            };
            out.push(Family {
                name: format!("{prefix}_{name}"),
                kind,
                labels,
            });
        }
    }
    out
}

fn collect_rs(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let p = e.expect("dir entry").path();
        if p.is_dir() {
            collect_rs(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// A leading Rust string literal: (its text, the rest).
fn string_literal(s: &str) -> Option<(String, &str)> {
    let s = s.trim_start();
    let body = s.strip_prefix('"')?;
    let mut out = String::new();
    let mut chars = body.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '\\' => {
                if let Some((_, n)) = chars.next() {
                    out.push(n);
                }
            }
            '"' => return Some((out, &body[i + 1..])),
            c => out.push(c),
        }
    }
    None
}

/// The declared type of a struct field or the initialiser of a `let`.
fn type_of(text: &str, ident: &str) -> Option<String> {
    let kinds = ["Counter", "Gauge", "Histogram"];
    for line in text.lines() {
        let l = line.trim().trim_start_matches("pub ");
        let decl = l
            .strip_prefix(&format!("{ident}:"))
            .or_else(|| l.strip_prefix(&format!("let {ident} =")))
            .or_else(|| l.strip_prefix(&format!("let {ident}:")));
        if let Some(ty) = decl
            && kinds.iter().any(|k| ty.contains(k))
        {
            return Some(ty.trim().trim_end_matches([',', ';']).to_string());
        }
    }
    None
}

/// The series names Prometheus sees (OpenMetrics: counters end in _total,
/// histograms are _bucket/_sum/_count) and their labels.
fn exported_series() -> BTreeMap<String, BTreeSet<String>> {
    let mut out = BTreeMap::new();
    for f in registered_families() {
        match f.kind {
            "counter" => {
                out.insert(format!("{}_total", f.name), f.labels);
            }
            "gauge" => {
                out.insert(f.name, f.labels);
            }
            _ => {
                let mut with_le = f.labels.clone();
                with_le.insert("le".into());
                out.insert(format!("{}_bucket", f.name), with_le);
                out.insert(format!("{}_sum", f.name), f.labels.clone());
                out.insert(format!("{}_count", f.name), f.labels);
            }
        }
    }
    out
}

/// What `check.py promql` found in FILES, checked against the exports.
fn metric_problems(
    files: &[PathBuf],
    exported: &BTreeMap<String, BTreeSet<String>>,
) -> Vec<String> {
    let mut args = vec!["promql".to_string()];
    args.extend(files.iter().map(|f| f.display().to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let o = check_py(&args);
    let uses: Value = serde_json::from_str(&assert_ok(&o, "check.py promql")).expect("promql JSON");
    let mut problems = Vec::new();
    let target: BTreeSet<String> = TARGET_LABELS.iter().map(|s| s.to_string()).collect();
    for u in array(&uses) {
        let where_ = str_of(&u["where"]);
        let mut available = target.clone();
        for m in array(&u["metrics"]) {
            let name = str_of(&m["name"]);
            // `up` is Prometheus' own, one per scraped target.
            let labels = if name == "up" {
                Some(&target)
            } else {
                exported.get(name)
            };
            let Some(labels) = labels else {
                problems.push(format!("{where_}: {name} is not a metric sluice exports"));
                continue;
            };
            available.extend(labels.iter().cloned());
            for l in array(&m["labels"]).iter().map(str_of) {
                if !labels.contains(l) && !target.contains(l) {
                    problems.push(format!(
                        "{where_}: {name} has no label {l} (it has {labels:?})"
                    ));
                }
            }
        }
        for l in array(&u["grouping"]).iter().map(str_of) {
            if !available.contains(l) {
                problems.push(format!(
                    "{where_}: groups by {l}, which none of its metrics has"
                ));
            }
        }
    }
    problems
}

#[test]
fn alerts_and_dashboard_use_only_exported_metrics() {
    let exported = exported_series();
    let files = [
        repo("deploy/helm/sluice/files/sluice-rules.yaml"),
        repo("deploy/helm/sluice/files/sluice-dashboard.json"),
    ];
    let problems = metric_problems(&files, &exported);
    assert!(
        problems.is_empty(),
        "{}\n\nexported: {:#?}",
        problems.join("\n"),
        exported.keys().collect::<Vec<_>>()
    );
    let o = check_py(&["dashboard", files[1].to_str().expect("utf-8")]);
    assert_ok(&o, "the dashboard's structure");

    // The alerts the issue asks for, on the metrics that carry them.
    let rules = read(&files[0]);
    for (what, metric) in [
        ("DLQ rate", "sluice_writer_events_dlq_total"),
        ("append errors", "sluice_writer_iceberg_append_errors_total"),
        ("consumer lag", "sluice_writer_consumer_lag"),
        (
            "ingest delay > 5 s",
            "rate(sluice_writer_ingest_delay_seconds_bucket[10m]))) > 5",
        ),
        ("stalled commits", "sluice_writer_commit_lag_seconds"),
        (
            "collector checkpoint age",
            "sluice_collector_checkpoint_age_seconds",
        ),
        ("readiness", "sluice_ready{job=~\"sluice-.+\"}"),
        ("targets down", "up{job=~\"sluice-.+\"}"),
    ] {
        assert!(rules.contains(metric), "no alert on {what} ({metric})");
    }
    // And the dashboard's sections.
    let dash = read(&files[1]);
    for metric in [
        "sluice_collector_lines_produced_total",
        "sluice_writer_rows_committed_total",
        "sluice_writer_commit_lag_seconds",
        "sluice_writer_consumer_lag",
        "sluice_writer_ingest_delay_seconds_bucket",
        "sluice_writer_last_commit_timestamp_seconds",
        "sluice_ready",
        "sluice_writer_events_dlq_total",
        "sluice_writer_batch_flush_seconds_bucket",
        "sluice_query_duration_seconds_bucket",
    ] {
        assert!(
            dash.contains(metric),
            "the dashboard does not show {metric}"
        );
    }

    // A misspelt metric, an unknown label and a grouping by a missing label
    // are caught.
    let dir = tempfile::tempdir().expect("temp dir");
    let bad = write_temp(
        dir.path(),
        "bad-rules.yaml",
        "groups:\n  - name: bad\n    rules:\n      - alert: A\n        expr: rate(sluice_writer_event_dlq_total[5m]) > 0\n      - alert: B\n        expr: sluice_writer_buffer_rows{topic=\"x\"} > 0\n      - alert: C\n        expr: sum by (partition) (sluice_collector_files_open) > 0\n",
    );
    let problems = metric_problems(&[bad], &exported);
    for expect in [
        "sluice_writer_event_dlq_total is not a metric",
        "has no label topic",
        "groups by partition",
    ] {
        assert!(
            problems.iter().any(|p| p.contains(expect)),
            "{expect:?} not reported: {problems:?}"
        );
    }
}

#[test]
fn metric_scan_reads_the_registrations() {
    let families = registered_families();
    let by_name: BTreeMap<&str, &Family> = families.iter().map(|f| (f.name.as_str(), f)).collect();
    // Spot checks against what README documents.
    let f = by_name["sluice_writer_batch_flush_seconds"];
    assert_eq!(
        (
            f.kind,
            f.labels.iter().map(String::as_str).collect::<Vec<_>>()
        ),
        ("histogram", vec!["table"])
    );
    let f = by_name["sluice_writer_events_dlq"];
    assert_eq!(f.kind, "counter");
    assert_eq!(
        f.labels,
        BTreeSet::from(["topic".to_string(), "reason".to_string()])
    );
    assert_eq!(
        by_name["sluice_collector_checkpoint_age_seconds"].kind,
        "gauge"
    );
    assert_eq!(by_name["sluice_query_duration_seconds"].kind, "histogram");
    let f = by_name["sluice_writer_consumer_lag"];
    assert_eq!(f.kind, "gauge");
    assert_eq!(
        f.labels,
        BTreeSet::from(["topic".to_string(), "partition".to_string()])
    );
    assert_eq!(
        by_name["sluice_writer_ingest_delay_seconds"].kind,
        "histogram"
    );
    assert_eq!(
        by_name["sluice_writer_last_commit_timestamp_seconds"].kind,
        "gauge"
    );
    // Served by every role's /metrics (src/health.rs).
    assert_eq!(
        (
            by_name["sluice_ready"].kind,
            by_name["sluice_ready"].labels.len()
        ),
        ("gauge", 0)
    );
    assert_eq!(by_name["sluice_indexer_lines_indexed"].kind, "counter");
    // Every registration of every role is seen: each prefix has several.
    for prefix in [
        "sluice_collector_",
        "sluice_writer_",
        "sluice_query_",
        "sluice_indexer_",
    ] {
        assert!(
            families
                .iter()
                .filter(|f| f.name.starts_with(prefix))
                .count()
                >= 3,
            "few {prefix} metrics found: {families:?}"
        );
    }
    let exported = exported_series();
    assert!(exported.contains_key("sluice_writer_batch_flush_seconds_bucket"));
    assert!(exported["sluice_writer_batch_flush_seconds_bucket"].contains("le"));
    assert!(exported.contains_key("sluice_collector_lines_read_total"));
    assert!(!exported.contains_key("sluice_collector_checkpoint_age_seconds_total"));
}

#[test]
fn chart_deploys_the_workspace_version() {
    let chart: Value =
        serde_yaml_ng::from_str(&read(&chart().join("Chart.yaml"))).expect("Chart.yaml");
    let manifest: toml::Value = toml::from_str(&read(&repo("Cargo.toml"))).expect("Cargo.toml");
    assert_eq!(
        chart["appVersion"].as_str(),
        manifest["workspace"]["package"]["version"].as_str(),
        "Chart.yaml appVersion is the image tag the chart deploys: keep it at the workspace version"
    );
}
