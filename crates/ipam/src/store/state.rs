//! The index's `state` file and the evidence that lets the index survive a
//! change to the network directory made by someone else.
//!
//! The sentinel (the network directory's mtime, see the `store` module)
//! says only *whether* the directory changed since our last seal, not how.
//! A full rebuild opens every allocation file, so at a few thousand
//! allocations it costs far more than an ADD. The one change a node sees
//! routinely is the removal of a cursor file `last_reserved_ip.N` (a reboot
//! or a restore that drops it), and that change cannot make the index
//! wrong: the index does not describe the cursor.
//!
//! To recognise that change without listing the directory, every cursor we
//! write is also hard-linked into the index directory (`cursor.N`), and the
//! state records its inode, mtime and content. Both host-local
//! implementations rewrite the cursor of a range set in place (O_TRUNC)
//! right after creating an allocation file in it, so a cursor inode that
//! kept its mtime and content saw no reservation through it. The directory
//! change is then accepted without a rebuild when all of these hold:
//!
//! - the directory is the same inode as when we sealed;
//! - every tracked cursor's inode (through our link) kept mtime, size and
//!   content, and is either still the file under the cursor's name or
//!   linked nowhere else any more (removed);
//! - at least one was removed.
//!
//! The next ADD puts the removed cursor back by rewriting that same inode
//! through our link and linking it into the network directory again: an
//! inode created in a directory of thousands of files costs ext4 more than
//! the rest of the ADD.
//!
//! Anything else (a cursor rewritten in place or replaced by another
//! inode, a file created or removed while every cursor stayed, an
//! unreadable state, another directory) rebuilds as before.
//!
//! What this evidence cannot exclude is a file created or removed around
//! the removal by something that leaves our cursor inode alone: a manual
//! copy, or the reference reserving while the cursor was gone and the new
//! cursor removed again. (The directory's mtime cannot tell: with
//! multigrain timestamps an unlink and a create a moment later may carry
//! one coarse time, and the removed inode's ctime need not match the
//! directory's.) So an accepted change leaves the index marked
//! *unverified* until the next rebuild, and the consequences are bounded:
//!
//! - a file the index lacks: the allocator's exclusive create fails on it
//!   and the walk goes on (no address is ever handed out twice); DEL and
//!   CHECK rescan when the index finds nothing for the container, and GC
//!   reads every file anyway, so they stay exact; only an ADD's duplicate
//!   check (one address per attachment and range set) answers from the
//!   index, i.e. it misses a second ADD without DEL of an attachment whose
//!   file arrived this way;
//! - a file the index still counts as taken: that address is skipped until
//!   a rescan, which a walk that finds no free address does before saying
//!   the pool is full.

use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::index::STATE_MAGIC;
use super::LAST_RESERVED_PREFIX;

/// Name of a cursor's hard link in the index directory.
pub(super) const CURSOR_LINK_PREFIX: &str = "cursor.";

/// A cursor file as we last wrote (or rebuilt) it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct CursorMark {
    /// The range set id (the `N` of `last_reserved_ip.N`).
    pub(super) id: String,
    pub(super) ino: u64,
    pub(super) mtime: (i64, i64),
    /// Its content.
    pub(super) ip: String,
}

/// The parsed `state` file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct State {
    pub(super) gen: u64,
    /// Inode of the network directory.
    pub(super) dir_ino: u64,
    /// A change by someone else was accepted without a rebuild (see the
    /// module docs); cleared by the next rebuild.
    pub(super) unverified: bool,
    pub(super) cursors: Vec<CursorMark>,
}

fn valid_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 20 && id.bytes().all(|b| b.is_ascii_alphanumeric())
}

impl State {
    pub(super) fn parse(text: &str) -> Option<State> {
        let mut lines = text.lines();
        let head = lines.next()?.strip_prefix(STATE_MAGIC)?;
        let gen = head.trim().strip_prefix("gen=")?.parse::<u64>().ok()?;
        let mut st = State {
            gen,
            ..State::default()
        };
        let mut have_dir = false;
        for line in lines {
            let f: Vec<&str> = line.split(' ').collect();
            match f.as_slice() {
                ["dir", ino] => {
                    st.dir_ino = ino.parse().ok()?;
                    have_dir = true;
                }
                ["unverified"] => st.unverified = true,
                ["cursor", id, ino, s, ns, ip] if valid_id(id) => st.cursors.push(CursorMark {
                    id: (*id).to_string(),
                    ino: ino.parse().ok()?,
                    mtime: (s.parse().ok()?, ns.parse().ok()?),
                    ip: (*ip).to_string(),
                }),
                [""] => {}
                _ => return None,
            }
        }
        have_dir.then_some(st)
    }

    pub(super) fn render(&self) -> String {
        let mut s = format!("{STATE_MAGIC} gen={:09}\ndir {}\n", self.gen, self.dir_ino);
        if self.unverified {
            s.push_str("unverified\n");
        }
        for c in &self.cursors {
            s.push_str(&format!(
                "cursor {} {} {} {} {}\n",
                c.id, c.ino, c.mtime.0, c.mtime.1, c.ip
            ));
        }
        s
    }

    /// Records `mark`, replacing the mark of the same cursor.
    pub(super) fn track(&mut self, mark: CursorMark) {
        match self.cursors.iter_mut().find(|c| c.id == mark.id) {
            Some(c) => *c = mark,
            None => self.cursors.push(mark),
        }
    }
}

pub(super) fn cursor_name(id: &str) -> String {
    format!("{LAST_RESERVED_PREFIX}{id}")
}

pub(super) fn link_path(index_dir: &Path, id: &str) -> PathBuf {
    index_dir.join(format!("{CURSOR_LINK_PREFIX}{id}"))
}

/// True when the only changes to `net_dir` since `st` was sealed were
/// removals of tracked cursor files (see the module docs).
pub(super) fn only_cursors_removed(
    st: &State,
    net_dir: &Path,
    index_dir: &Path,
    dir_md: &fs::Metadata,
) -> bool {
    if st.dir_ino != dir_md.ino() || st.cursors.is_empty() {
        return false;
    }
    let mut removed = false;
    for c in &st.cursors {
        let link = link_path(index_dir, &c.id);
        let Ok(lmd) = fs::symlink_metadata(&link) else {
            return false;
        };
        if !lmd.is_file()
            || lmd.ino() != c.ino
            || (lmd.mtime(), lmd.mtime_nsec()) != c.mtime
            || lmd.len() != c.ip.len() as u64
        {
            return false;
        }
        match fs::symlink_metadata(net_dir.join(cursor_name(&c.id))) {
            Ok(nmd) if nmd.ino() == c.ino && nmd.dev() == lmd.dev() => {}
            Ok(_) => return false,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                if lmd.nlink() != 1 {
                    return false;
                }
                removed = true;
            }
            Err(_) => return false,
        }
        // Same mtime within one clock tick does not prove the content:
        // compare it too (a handful of bytes).
        if fs::read(&link).ok().as_deref() != Some(c.ip.as_bytes()) {
            return false;
        }
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_round_trips_and_rejects_garbage() {
        let st = State {
            gen: 42,
            dir_ino: 7,
            unverified: true,
            cursors: vec![CursorMark {
                id: "0".into(),
                ino: 99,
                mtime: (1_700_000_000, 123),
                ip: "10.0.0.5".into(),
            }],
        };
        let text = st.render();
        assert!(text.starts_with(&format!("{STATE_MAGIC} gen=000000042\n")));
        assert_eq!(State::parse(&text), Some(st));
        assert_eq!(State::parse("rcni-ipam-index v4 gen=000000001\n"), None);
        assert_eq!(State::parse(&format!("{STATE_MAGIC} gen=1\n")), None);
        let bad = format!("{STATE_MAGIC} gen=1\ndir 3\ncursor ../x 1 2 3 10.0.0.1\n");
        assert_eq!(State::parse(&bad), None);
    }
}
