//! Real container runtimes running rcni, end to end, inside namespaces the
//! tests make.
//!
//! A [`Jail`] is the test's whole world: a node network namespace (the
//! "host" side every plugin sees), joined by a private mount namespace and
//! a private PID namespace. Inside it `/run`, `/var/lib`, `/opt`,
//! `/etc/cni`, `/dev/shm` are fresh tmpfs mounts (so `/run/netns`,
//! `/var/lib/cni`, `/opt/cni/bin`, `/etc/cni/net.d` are the test's own),
//! `/etc/containers` is a private directory, and `/sys` is a sysfs of the
//! node namespace. Runtimes and their daemons run in there; when the jail
//! is dropped its PID namespace's init is killed, which kills every
//! process in it (daemons, shims, conmon, containers), and the mount
//! namespace with all its mounts (container network namespaces included)
//! goes with it. Nothing the runtimes write lands outside the jail's state
//! directory.
//!
//! [`podman::PodmanEnv`] configures Podman (CNI backend, plugins from
//! `rcni install`) in a jail; [`containerd::Containerd`] starts containerd
//! with its CRI plugin on rcni. [`check`] holds what the suites assert with:
//! HTTP probes, the leftover scan, the row table.

// Test-only crate: a harness step that fails panics with its message, as a test does.
#![allow(clippy::unwrap_used, clippy::expect_used)]

pub mod check;
pub mod containerd;
pub mod jail;
pub mod podman;
pub mod proc;

pub use jail::{Cgroups, Jail};

/// The local image every suite runs: a static busybox, nothing pulled.
pub const IMAGE: &str = "localhost/rcni-busybox:test";
