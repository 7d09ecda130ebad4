//! The sysctl seam (tuning): reading and writing `/proc/sys` files as a
//! trait, and entering the namespace they resolve in as another. The real
//! ones are [`ProcSys`] ([`crate::sysctl::read_path`] /
//! [`crate::sysctl::write_path`]) and `netns::NetNs`; the fakes
//! ([`fake::FakeSysctls`], [`fake::Here`], under `cfg(test)` or the `fake`
//! feature) keep the values in memory and run on the spot.

use crate::error::Result;
use std::path::Path;

/// Sysctl files of the namespace the calling thread is in.
pub trait SysctlOps {
    /// The value of a sysctl file, without the trailing newline.
    fn read(&self, path: &Path) -> Result<String>;
    /// Writes a sysctl file that exists.
    fn write(&self, path: &Path, value: &str) -> Result<()>;
}

/// The kernel's `/proc/sys`.
pub struct ProcSys;

impl SysctlOps for ProcSys {
    fn read(&self, path: &Path) -> Result<String> {
        crate::sysctl::read_path(path)
    }
    fn write(&self, path: &Path, value: &str) -> Result<()> {
        crate::sysctl::write_path(path, value)
    }
}

/// Running a closure inside a network namespace (`/proc/sys/net` resolves
/// against the thread's namespace).
pub trait Enter {
    /// Runs `f` inside the namespace.
    fn run_in<T>(&self, f: impl FnOnce() -> T) -> netns::Result<T>;
}

impl Enter for netns::NetNs {
    fn run_in<T>(&self, f: impl FnOnce() -> T) -> netns::Result<T> {
        self.run(f)
    }
}

/// The fakes of sysctls and namespace entry, for unit tests.
#[cfg(any(test, feature = "fake"))]
pub mod fake {
    use super::*;
    use crate::routing::fake::Plan;
    use std::cell::RefCell;
    use std::collections::BTreeMap;
    use std::path::PathBuf;

    /// "Enters" by running the closure on the spot.
    pub struct Here;

    impl Enter for Here {
        fn run_in<T>(&self, f: impl FnOnce() -> T) -> netns::Result<T> {
            Ok(f())
        }
    }

    /// Sysctl files in memory: writing a file that is not there fails
    /// (ENOENT, as `/proc/sys` refuses to create one); changes are logged
    /// (`write /proc/sys/net/... = 1`) and fail as planned (see [`Plan`];
    /// reads as `read PATH`).
    #[derive(Default)]
    pub struct FakeSysctls {
        /// The log and the planned failures.
        pub plan: Plan,
        /// The files and their values.
        pub values: RefCell<BTreeMap<PathBuf, String>>,
    }

    impl FakeSysctls {
        /// Files with these values.
        pub fn with(values: &[(&str, &str)]) -> FakeSysctls {
            let f = FakeSysctls::default();
            for (k, v) in values {
                f.values
                    .borrow_mut()
                    .insert(PathBuf::from(k), v.to_string());
            }
            f
        }
        /// The value of a file now.
        pub fn get(&self, path: &str) -> Option<String> {
            self.values.borrow().get(Path::new(path)).cloned()
        }
        fn op(&self, line: String, log: bool, path: &Path) -> Result<()> {
            self.plan.op(line.clone(), log).map_err(|(l, errno)| {
                crate::Error::io(l, std::io::Error::from_raw_os_error(errno))
            })?;
            if self.values.borrow().contains_key(path) {
                Ok(())
            } else {
                Err(crate::Error::io(
                    line,
                    std::io::Error::from(std::io::ErrorKind::NotFound),
                ))
            }
        }
    }

    impl SysctlOps for FakeSysctls {
        fn read(&self, path: &Path) -> Result<String> {
            self.op(format!("read {}", path.display()), false, path)?;
            Ok(self.get(&path.display().to_string()).unwrap_or_default())
        }
        fn write(&self, path: &Path, value: &str) -> Result<()> {
            self.op(format!("write {} = {value}", path.display()), true, path)?;
            self.values
                .borrow_mut()
                .insert(path.to_path_buf(), value.to_string());
            Ok(())
        }
    }
}
