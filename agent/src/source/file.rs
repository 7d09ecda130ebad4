//! Nodes from a JSON file: `[{"name", "addresses", "podCIDRs"}, …]`, the
//! serde form of [`NodeInfo`]. For clusters without Kubernetes or etcd
//! (the file is distributed by other means) and for tests. Read anew on
//! every poll, so editing the file changes the cluster.

use std::path::PathBuf;

use crate::model::{node_from_json, NodeInfo, NodeSource, SourceError};

/// Nodes from the JSON file at `path`.
pub struct FileSource {
    path: PathBuf,
    skipped: Vec<String>,
}

impl FileSource {
    /// A source reading the file at `path`.
    pub fn new(path: impl Into<PathBuf>) -> FileSource {
        FileSource {
            path: path.into(),
            skipped: Vec::new(),
        }
    }
}

impl NodeSource for FileSource {
    fn describe(&self) -> String {
        format!("file {}", self.path.display())
    }

    fn nodes(&mut self) -> Result<Vec<NodeInfo>, SourceError> {
        let err = |m: String| SourceError::new(self.describe(), m);
        let body = std::fs::read(&self.path).map_err(|e| err(format!("read: {e}")))?;
        let list: Vec<serde_json::Value> =
            serde_json::from_slice(&body).map_err(|e| err(format!("parse: {e}")))?;
        let mut nodes: Vec<NodeInfo> = Vec::new();
        self.skipped.clear();
        for (i, v) in list.iter().enumerate() {
            match node_from_json(v) {
                Ok((n, problems)) => {
                    self.skipped.extend(problems);
                    if nodes.iter().any(|m| m.name == n.name) {
                        self.skipped
                            .push(format!("node {:?} is listed twice; the first kept", n.name));
                    } else {
                        nodes.push(n);
                    }
                }
                Err(e) => self.skipped.push(format!("entry #{i}: {e}; skipped")),
            }
        }
        Ok(nodes)
    }

    fn skipped(&self) -> Vec<String> {
        self.skipped.clone()
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
        assert_eq!(s.nodes().unwrap().len(), 1);
        assert!(s.skipped()[0].contains("twice"), "{:?}", s.skipped());
        std::fs::write(&p, r#"[{"addresses":[]},{"name":"b","podCIDRs":["x"]}]"#).unwrap();
        let n = s.nodes().unwrap();
        assert_eq!((n.len(), n[0].name.as_str()), (1, "b"));
        assert_eq!(s.skipped().len(), 2, "{:?}", s.skipped());
        std::fs::write(&p, "{").unwrap();
        let e = s.nodes().unwrap_err().to_string();
        assert!(e.starts_with("file "), "{e}");
        let _ = std::fs::remove_file(&p);
        assert!(s.nodes().is_err());
    }
}
