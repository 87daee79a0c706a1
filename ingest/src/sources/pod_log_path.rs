//! What a kubelet log path says about the lines in it:
//! `<root>/<namespace>_<pod>_<pod-uid>/<container>/<restart>.log`, and its
//! rotated forms `<restart>.log.<YYYYMMDD-HHMMSS>` and `….gz`.

use std::path::Path;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodLogPath {
    pub namespace: String,
    pub pod: String,
    pub pod_uid: String,
    pub container: String,
    pub restart: i32,
    /// `Some("20261121-143208")` for a rotated file.
    pub rotated_at: Option<String>,
    pub gzipped: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a kubelet pod log path ({reason}): {path}")]
pub struct PodLogPathError {
    pub path: String,
    pub reason: &'static str,
}

impl PodLogPath {
    /// Parses the last three components of `path`.
    pub fn parse(path: &Path) -> Result<Self, PodLogPathError> {
        let err = |reason| PodLogPathError {
            path: path.display().to_string(),
            reason,
        };
        let mut parts = path.iter().rev().map(|p| p.to_str());
        let file = parts.next().flatten().ok_or_else(|| err("no file name"))?;
        let container = parts
            .next()
            .flatten()
            .ok_or_else(|| err("no container dir"))?;
        let pod_dir = parts.next().flatten().ok_or_else(|| err("no pod dir"))?;

        // Namespaces and pod names cannot contain '_', so the split is exact.
        let mut pod_parts = pod_dir.splitn(3, '_');
        let (Some(namespace), Some(pod), Some(pod_uid)) =
            (pod_parts.next(), pod_parts.next(), pod_parts.next())
        else {
            return Err(err("pod dir is not <namespace>_<pod>_<uid>"));
        };
        let (file, gzipped) = match file.strip_suffix(".gz") {
            Some(f) => (f, true),
            None => (file, false),
        };
        let (restart, rotated_at) = match file.split_once(".log") {
            Some((n, "")) => (n, None),
            Some((n, rest)) => match rest.strip_prefix('.') {
                Some(stamp) if !stamp.is_empty() => (n, Some(stamp.to_string())),
                _ => return Err(err("unexpected suffix after .log")),
            },
            None => return Err(err("file is not <restart>.log")),
        };
        let restart = restart
            .parse::<i32>()
            .ok()
            .filter(|r| *r >= 0)
            .ok_or_else(|| err("restart is not a number"))?;
        if namespace.is_empty() || pod.is_empty() || pod_uid.is_empty() || container.is_empty() {
            return Err(err("empty path component"));
        }
        Ok(Self {
            namespace: namespace.into(),
            pod: pod.into(),
            pod_uid: pod_uid.into(),
            container: container.into(),
            restart,
            rotated_at,
            gzipped,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_live_rotated_and_gzipped() {
        let p = PodLogPath::parse(Path::new(
            "/var/log/pods/iomete-system_iom-cluster-0_6f1c-aa/iom-cluster/6.log",
        ))
        .unwrap();
        assert_eq!(
            (p.namespace.as_str(), p.pod.as_str(), p.pod_uid.as_str()),
            ("iomete-system", "iom-cluster-0", "6f1c-aa")
        );
        assert_eq!((p.container.as_str(), p.restart), ("iom-cluster", 6));
        let r = PodLogPath::parse(Path::new("ns_p_u/c/0.log.20261121-143208.gz")).unwrap();
        assert_eq!(r.rotated_at.as_deref(), Some("20261121-143208"));
        assert!(r.gzipped);
    }

    #[test]
    fn rejects_other_files() {
        assert!(PodLogPath::parse(Path::new("ns_p_u/c/x.log")).is_err());
        assert!(PodLogPath::parse(Path::new("nspu/c/0.log")).is_err());
        assert!(PodLogPath::parse(Path::new("ns_p_u/c/0.txt")).is_err());
        assert!(PodLogPath::parse(Path::new("0.log")).is_err());
    }
}
