//! Node sources (see [`crate::model::NodeSource`]).

pub mod etcd;
pub mod file;
pub mod kubernetes;

use std::path::Path;

use crate::model::{NodeSource, SourceError};

/// Opens the source named by a `--source` spec:
/// - `file:PATH`: a JSON list of nodes;
/// - `kubernetes`: Node objects, with the pod's service account;
/// - `kubernetes:KUBECONFIG`: Node objects, with a kubeconfig file;
/// - `etcd:ENDPOINTS`: comma-separated `http(s)://host:port`, keys under
///   `RCNI_ETCD_PREFIX` (default `/rcni/nodes/`); `RCNI_ETCD_CA`,
///   `RCNI_ETCD_CERT` and `RCNI_ETCD_KEY` name TLS files.
///
/// `insecure_http_token` allows a Kubernetes bearer token over `http://`.
pub fn open(spec: &str, insecure_http_token: bool) -> Result<Box<dyn NodeSource>, SourceError> {
    open_with(spec, insecure_http_token, None)
}

/// [`open`], with pod CIDR allocation for an `etcd:` source.
pub fn open_with(
    spec: &str,
    insecure_http_token: bool,
    allocation: Option<etcd::Allocation>,
) -> Result<Box<dyn NodeSource>, SourceError> {
    if let Some(path) = spec.strip_prefix("file:") {
        if path.is_empty() {
            return Err(SourceError::new("file", "file: needs a path"));
        }
        return Ok(Box::new(file::FileSource::new(path)));
    }
    if spec == "kubernetes" {
        return Ok(Box::new(
            kubernetes::KubernetesSource::from_env()?.allow_http_token(insecure_http_token),
        ));
    }
    if let Some(path) = spec.strip_prefix("kubernetes:") {
        return Ok(Box::new(
            kubernetes::KubernetesSource::from_kubeconfig(Path::new(path))?
                .allow_http_token(insecure_http_token),
        ));
    }
    if let Some(endpoints) = spec.strip_prefix("etcd:") {
        let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let prefix = env("RCNI_ETCD_PREFIX").unwrap_or_else(|| etcd::DEFAULT_PREFIX.into());
        let mut source = etcd::EtcdSource::new(endpoints, &prefix)?;
        if let Some(ca) = env("RCNI_ETCD_CA") {
            source = source.with_ca_file(Path::new(&ca))?;
        }
        if let (Some(cert), Some(key)) = (env("RCNI_ETCD_CERT"), env("RCNI_ETCD_KEY")) {
            source = source.with_client_cert(Path::new(&cert), Path::new(&key))?;
        }
        if let Some(a) = allocation {
            source = source.with_allocation(a);
        }
        return Ok(Box::new(source));
    }
    Err(SourceError::new(
        spec,
        "unknown source (expected file:PATH, kubernetes[:KUBECONFIG] or etcd:ENDPOINTS)",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs() {
        assert_eq!(
            open("file:/x.json", false).unwrap().describe(),
            "file /x.json"
        );
        assert!(open("file:", false).is_err());
        // Outside a pod there is no service account to use.
        if std::env::var_os("KUBERNETES_SERVICE_HOST").is_none() {
            assert!(open("kubernetes", false).is_err());
        }
        assert!(open("kubernetes:/nonexistent/kubeconfig", false).is_err());
        let etcd = open("etcd:http://127.0.0.1:2379", false).expect("etcd source");
        assert!(
            etcd.describe().contains("127.0.0.1:2379"),
            "{}",
            etcd.describe()
        );
        assert!(open("consul", false).is_err());
    }
}
