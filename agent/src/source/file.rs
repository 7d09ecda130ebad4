//! Nodes from a JSON file: `[{"name", "addresses", "podCIDRs"}, …]`, the
//! serde form of [`NodeInfo`]. For clusters without Kubernetes or etcd
//! (the file is distributed by other means) and for tests. Read anew on
//! every poll, so editing the file changes the cluster.

use std::path::PathBuf;

use crate::model::{NodeInfo, NodeSource, SourceError};

pub struct FileSource {
    path: PathBuf,
}

impl FileSource {
    pub fn new(path: impl Into<PathBuf>) -> FileSource {
        FileSource { path: path.into() }
    }
}

impl NodeSource for FileSource {
    fn describe(&self) -> String {
        format!("file {}", self.path.display())
    }

    fn nodes(&mut self) -> Result<Vec<NodeInfo>, SourceError> {
        let err = |m: String| SourceError::new(self.describe(), m);
        let body = std::fs::read(&self.path).map_err(|e| err(format!("read: {e}")))?;
        let nodes: Vec<NodeInfo> =
            serde_json::from_slice(&body).map_err(|e| err(format!("parse: {e}")))?;
        for (i, n) in nodes.iter().enumerate() {
            if n.name.is_empty() {
                return Err(err(format!("node #{i} has an empty name")));
            }
            if nodes[..i].iter().any(|m| m.name == n.name) {
                return Err(err(format!("node {:?} is listed twice", n.name)));
            }
        }
        Ok(nodes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_serde_form() {
        let p = std::env::temp_dir().join(format!("rcni-agent-nodes-{}.json", std::process::id()));
        std::fs::write(
            &p,
            r#"[{"name":"a","addresses":["192.168.1.1"],"podCIDRs":["10.244.0.0/24"]},
                {"name":"b","addresses":[],"podCIDRs":[]}]"#,
        )
        .unwrap();
        let mut s = FileSource::new(&p);
        let n = s.nodes().unwrap();
        assert_eq!(n.len(), 2);
        assert_eq!(n[0].pod_cidrs[0].to_string(), "10.244.0.0/24");
        std::fs::write(&p, r#"[{"name":"a","addresses":[],"podCIDRs":[]},{"name":"a","addresses":[],"podCIDRs":[]}]"#).unwrap();
        assert!(s.nodes().unwrap_err().to_string().contains("twice"));
        std::fs::write(&p, "{").unwrap();
        let e = s.nodes().unwrap_err().to_string();
        assert!(e.starts_with("file "), "{e}");
        let _ = std::fs::remove_file(&p);
        assert!(s.nodes().is_err());
    }
}
