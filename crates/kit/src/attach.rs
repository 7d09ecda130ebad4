//! Attachments of one network on this node, one small file per
//! (containerID, ifname) under `<state root>/<network>/`, so that a
//! per-network resource (the masquerade rule) is created with the first
//! attachment and removed with the last — also when DEL comes without a
//! netns, and by GC. Every change happens under an flock of `<dir>/lock`.

use crate::error::{Error, Result};
use crate::os::{self, Durability};
use ipnet::IpNet;
use std::path::{Path, PathBuf};

/// Default root: on tmpfs, because the records mirror kernel state (links,
/// nftables rules) that a reboot wipes too; records on persistent disk would
/// outlive their pods and keep a masquerade rule alive until GC.
pub const DEFAULT_STATE_ROOT: &str = "/run/cni/rcni";

const PREFIX: &str = "att.";
/// Longest container id written as is into a record's file name.
const RECORD_ID_MAX: usize = 200;
/// The line of a record that holds a long container id in full.
const ID_LINE: &str = "id:";

/// One attachment as recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attachment {
    /// The container id in full (record names carry a bounded form).
    pub container_id: String,
    /// The interface in the pod.
    pub ifname: String,
    /// The subnets this attachment's addresses are in.
    pub subnets: Vec<IpNet>,
}

/// The attachment records of one network.
#[derive(Debug, Clone)]
pub struct Attachments {
    dir: PathBuf,
}

/// Held while the records are read and changed.
pub struct Lock {
    _held: os::Lock,
}

impl Attachments {
    /// Records of `network` under `root` (None: [`DEFAULT_STATE_ROOT`]).
    pub fn new(root: Option<&Path>, network: &str) -> Attachments {
        let root = root.unwrap_or(Path::new(DEFAULT_STATE_ROOT));
        Attachments {
            dir: root.join(network),
        }
    }

    /// The directory holding this network's records.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Takes the network's lock (creating the directory).
    pub fn lock(&self) -> Result<Lock> {
        os::make_private_dir(&self.dir)
            .map_err(|e| Error::io(format!("create {}", self.dir.display()), e))?;
        let p = self.dir.join("lock");
        let held = os::Lock::exclusive(&p, true)
            .map_err(|e| Error::io(format!("lock {}", p.display()), e))?;
        Ok(Lock { _held: held })
    }

    fn file_for(&self, container_id: &str, ifname: &str) -> PathBuf {
        // Container ids and interface names contain no '/' (validated by
        // the skeleton); '\u{1}' cannot appear in either. A long id is
        // bounded (prefix + hash, see nft::ident) to keep the name under
        // NAME_MAX; its record then carries the full id (`id:` line).
        let cid = cni_spec::ident::bounded(container_id, RECORD_ID_MAX);
        self.dir.join(format!("{PREFIX}{cid}\u{1}{ifname}"))
    }

    /// Records an attachment (overwrites a previous record of the same pair).
    pub fn add(&self, _lock: &Lock, a: &Attachment) -> Result<()> {
        let p = self.file_for(&a.container_id, &a.ifname);
        let mut body: Vec<String> = a.subnets.iter().map(|s| s.to_string()).collect();
        if a.container_id.len() > RECORD_ID_MAX {
            body.push(format!("{ID_LINE}{}", a.container_id));
        }
        // On tmpfs and mirroring kernel state a reboot wipes: atomic is
        // enough, no fsync.
        os::write_atomic(&p, body.join("\n").as_bytes(), 0o600, Durability::Atomic)
            .map_err(|e| Error::io(format!("write {}", p.display()), e))
    }

    /// Removes a record; `false` when there was none. A bounded record
    /// name is only removed when the record names this very id.
    pub fn remove(&self, _lock: &Lock, container_id: &str, ifname: &str) -> Result<bool> {
        let p = self.file_for(container_id, ifname);
        if container_id.len() > RECORD_ID_MAX {
            let body = std::fs::read_to_string(&p).unwrap_or_default();
            let full = body.lines().find_map(|l| l.strip_prefix(ID_LINE));
            if full.is_some_and(|f| f != container_id) {
                return Ok(false);
            }
        }
        match std::fs::remove_file(&p) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(Error::io(format!("remove {}", p.display()), e)),
        }
    }

    /// Every record (a missing directory is none).
    pub fn list(&self, _lock: &Lock) -> Result<Vec<Attachment>> {
        let rd = match std::fs::read_dir(&self.dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(Error::io(format!("list {}", self.dir.display()), e)),
        };
        let mut out = Vec::new();
        for ent in rd.flatten() {
            let name = ent.file_name();
            let Some(name) = name.to_str() else { continue };
            let Some(rest) = name.strip_prefix(PREFIX) else {
                continue;
            };
            if rest.ends_with(".tmp") {
                continue;
            }
            let Some((cid, ifname)) = rest.split_once('\u{1}') else {
                continue;
            };
            let body = std::fs::read_to_string(ent.path()).unwrap_or_default();
            let full = body.lines().find_map(|l| l.strip_prefix(ID_LINE));
            out.push(Attachment {
                container_id: full.unwrap_or(cid).to_string(),
                ifname: ifname.to_string(),
                subnets: body.lines().filter_map(|l| l.trim().parse().ok()).collect(),
            });
        }
        Ok(out)
    }

    /// Whether any record is left.
    pub fn is_empty(&self, lock: &Lock) -> Result<bool> {
        Ok(self.list(lock)?.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn add_list_remove() {
        let root = std::env::temp_dir().join(format!("rcni-net-attach-{}", std::process::id()));
        let a = Attachments::new(Some(&root), "n1");
        let l = a.lock().expect("lock");
        assert!(a.is_empty(&l).expect("empty"));
        let x = Attachment {
            container_id: "c1".into(),
            ifname: "eth0".into(),
            subnets: vec!["10.1.0.0/24".parse().expect("net")],
        };
        a.add(&l, &x).expect("add");
        assert_eq!(a.list(&l).expect("list"), vec![x.clone()]);
        assert!(a.remove(&l, "c1", "eth0").expect("rm"));
        assert!(!a.remove(&l, "c1", "eth0").expect("rm again"));
        assert!(a.is_empty(&l).expect("empty"));
        let _ = std::fs::remove_dir_all(&root);
    }

    #[test]
    fn ten_thousand_character_ids() {
        let root =
            std::env::temp_dir().join(format!("rcni-net-attach-long-{}", std::process::id()));
        let a = Attachments::new(Some(&root), "n1");
        let l = a.lock().expect("lock");
        let long = "a.b-c_".repeat(1667);
        let x = Attachment {
            container_id: long.clone(),
            ifname: "eth0.5".into(),
            subnets: vec!["10.1.0.0/24".parse().expect("net")],
        };
        a.add(&l, &x).expect("add");
        assert_eq!(a.list(&l).expect("list"), vec![x.clone()]);
        let other = format!("{long}x");
        assert!(!a.remove(&l, &other, "eth0.5").expect("rm other"));
        assert!(a.remove(&l, &long, "eth0.5").expect("rm"));
        assert!(a.is_empty(&l).expect("empty"));
        let names: Vec<_> = std::fs::read_dir(a.dir())
            .expect("dir")
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("lock")], "no tmp left");
        let _ = std::fs::remove_dir_all(&root);
    }
}
