//! Playing the kubelet against the test kube-apiserver (no kubelet or
//! scheduler runs): a namespace with one pod `api-0` (container `app`)
//! whose status and Events the tests write through the API.

use k8s_openapi::api::core::v1::{Event, Namespace, Pod};
use kube::Client;
use kube::api::{Api, PostParams};
use serde_json::{Value, json};

pub struct CrashingPod {
    pub client: Client,
    pub ns: String,
    pub uid: String,
    pub pods: Api<Pod>,
    pub events: Api<Event>,
}

impl CrashingPod {
    /// A fresh namespace `<prefix>-<random>` holding pod `api-0`.
    pub async fn create(prefix: &str) -> Self {
        let kubeconfig = sluice_testkit::kubeconfig();
        let client = sluice_ingest::collect::kube_watch::client(Some(&kubeconfig))
            .await
            .unwrap();
        let ns = format!(
            "{prefix}-{}",
            &uuid::Uuid::new_v4().simple().to_string()[..8]
        );
        let pp = PostParams::default();
        Api::<Namespace>::all(client.clone())
            .create(
                &pp,
                &serde_json::from_value(json!({"metadata": {"name": ns}})).unwrap(),
            )
            .await
            .unwrap();
        let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
        let pod = pods
            .create(
                &pp,
                &serde_json::from_value(json!({
                    "metadata": {"name": "api-0"},
                    "spec": {"containers": [{"name": "app", "image": "shop/api:1"}]}
                }))
                .unwrap(),
            )
            .await
            .unwrap();
        let uid = pod.metadata.uid.clone().unwrap();
        let events = Api::namespaced(client.clone(), &ns);
        Self {
            client,
            ns,
            uid,
            pods,
            events,
        }
    }

    /// A `pods/status` patch: `app` ended (`reason`, `code`) and restarted
    /// `restarts` times.
    pub fn terminated(restarts: i32, reason: &str, code: i32) -> Value {
        json!({"status": {"containerStatuses": [{
            "name": "app", "restartCount": restarts, "ready": false,
            "image": "shop/api:1", "imageID": "",
            "state": {"waiting": {"reason": "CrashLoopBackOff"}},
            "lastState": {"terminated": {"reason": reason, "exitCode": code,
                "startedAt": "2026-11-23T10:00:00Z", "finishedAt": "2026-11-23T10:05:00Z"}}
        }]}})
    }

    /// The kubelet's back-off Event about `app`, seen `count` times.
    pub fn backoff(&self, count: i32) -> Value {
        json!({
            "metadata": {"name": "api-0.backoff"},
            "involvedObject": {"kind": "Pod", "namespace": self.ns, "name": "api-0", "uid": self.uid,
                "fieldPath": "spec.containers{app}"},
            "reason": "BackOff", "type": "Warning", "count": count,
            "message": "Back-off restarting failed container",
            "firstTimestamp": "2026-11-23T10:05:01Z", "lastTimestamp": "2026-11-23T10:06:00Z",
            "source": {"component": "kubelet", "host": "node-a"}
        })
    }
}
