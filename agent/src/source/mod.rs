//! Node sources (see [`crate::model::NodeSource`]).

pub mod file;

use crate::model::{NodeSource, SourceError};

/// Opens the source named by a `--source` spec: `file:PATH`,
/// `kubernetes` (in-cluster service account) or `etcd:ENDPOINTS`.
pub fn open(spec: &str) -> Result<Box<dyn NodeSource>, SourceError> {
    if let Some(path) = spec.strip_prefix("file:") {
        if path.is_empty() {
            return Err(SourceError::new("file", "file: needs a path"));
        }
        return Ok(Box::new(file::FileSource::new(path)));
    }
    if spec == "kubernetes" {
        return Err(SourceError::new(
            "kubernetes",
            "not built in: this rcni-agent build has no Kubernetes source",
        ));
    }
    if spec.starts_with("etcd:") {
        return Err(SourceError::new(
            "etcd",
            "not built in: this rcni-agent build has no etcd source",
        ));
    }
    Err(SourceError::new(
        spec,
        "unknown source (expected file:PATH, kubernetes or etcd:ENDPOINTS)",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs() {
        assert_eq!(open("file:/x.json").unwrap().describe(), "file /x.json");
        assert!(open("file:").is_err());
        let e = open("kubernetes").err().unwrap().to_string();
        assert!(e.contains("not built in"), "{e}");
        assert!(open("etcd:http://127.0.0.1:2379").is_err());
        assert!(open("consul").is_err());
    }
}
