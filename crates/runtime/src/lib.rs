//! The CNI runtime side: what libcni is to Go runtimes.
//!
//! * [`load_network`] finds a network in a configuration directory
//!   (`*.conflist`, then legacy `*.conf`/`*.json`, plugin files in
//!   `<dir>/<network>/`), negotiating `cniVersion`/`cniVersions`.
//! * [`CniConfig`] runs a network's plugin chain: [`CniConfig::add`],
//!   [`CniConfig::check`], [`CniConfig::del`], [`CniConfig::gc`],
//!   [`CniConfig::status`]. It validates everything before the first plugin
//!   runs, injects `name`, `cniVersion`, `prevResult` and `runtimeConfig`
//!   (declared capabilities only), and can kill plugins that hang.
//! * [`Cache`] keeps each attachment's result in libcni's `cniCacheV1`
//!   format under `<cache dir>/results/`, so rcni and libcni runtimes read
//!   each other's caches.
//! * [`cnitool`] is the reference `cnitool` command line on top of it.
//!
//! # A whole lifecycle
//!
//! Plugins here are tiny shell scripts so the example runs anywhere; with
//! real plugins the namespace must exist and the caller must be root.
//!
//! ```
//! use runtime::{load_network, CniConfig, RuntimeConf};
//! use std::os::unix::fs::PermissionsExt;
//! # let tmp = std::env::temp_dir().join(format!("rcni-doc-lib-{}", std::process::id()));
//! # let _ = std::fs::remove_dir_all(&tmp);
//! let (confdir, bindir, cachedir) = (tmp.join("net.d"), tmp.join("bin"), tmp.join("cache"));
//! std::fs::create_dir_all(&confdir)?;
//! std::fs::create_dir_all(&bindir)?;
//!
//! // A plugin that answers ADD with an address and accepts everything else.
//! let plugin = bindir.join("fake");
//! std::fs::write(&plugin, r#"#!/bin/sh
//! cat >/dev/null
//! [ "$CNI_COMMAND" = ADD ] && echo '{"cniVersion":"1.1.0","ips":[{"address":"10.22.0.5/24"}]}'
//! exit 0
//! "#)?;
//! std::fs::set_permissions(&plugin, std::fs::Permissions::from_mode(0o755))?;
//! std::fs::write(confdir.join("10-demo.conflist"), r#"{
//!   "cniVersion": "1.1.0", "name": "demo",
//!   "plugins": [{"type": "fake", "capabilities": {"portMappings": true}}]
//! }"#)?;
//!
//! let net = load_network(&confdir, "demo")?;
//! let cni = CniConfig::new([&bindir])
//!     .with_cache_dir(&cachedir)
//!     .with_timeout(std::time::Duration::from_secs(10));
//! let rt = RuntimeConf::new("ctr1", "/run/netns/ctr1", "eth0")
//!     .arg("IgnoreUnknown", "1")
//!     .capability("portMappings", serde_json::json!([{"hostPort": 8080, "containerPort": 80}]));
//!
//! let result = cni.add(&net, &rt)?;
//! assert_eq!(result.ips[0].address.to_string(), "10.22.0.5/24");
//! // The result is cached in libcni's format...
//! assert!(cachedir.join("results/demo-ctr1-eth0").exists());
//! assert_eq!(cni.cached_result(&net, &rt)?.unwrap(), result);
//! // ...so CHECK can hand it to the plugins.
//! cni.check(&net, &rt)?;
//! cni.status(&net)?;
//! cni.del(&net, &rt)?;
//! assert!(cni.cached_attachments(None).is_empty());
//! # std::fs::remove_dir_all(&tmp)?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Garbage collection
//!
//! ```
//! use runtime::{CniConfig, NetworkConfigList, RuntimeConf};
//! use cni_spec::GcAttachment;
//! use std::os::unix::fs::PermissionsExt;
//! # let tmp = std::env::temp_dir().join(format!("rcni-doc-gc-{}", std::process::id()));
//! # let _ = std::fs::remove_dir_all(&tmp);
//! # std::fs::create_dir_all(tmp.join("bin"))?;
//! let plugin = tmp.join("bin/fake");
//! std::fs::write(&plugin, "#!/bin/sh\ncat >/dev/null\n[ \"$CNI_COMMAND\" = ADD ] && echo '{\"cniVersion\":\"1.1.0\"}'\nexit 0\n")?;
//! std::fs::set_permissions(&plugin, std::fs::Permissions::from_mode(0o755))?;
//! let net = NetworkConfigList::from_bytes(
//!     br#"{"cniVersion":"1.1.0","name":"gcnet","plugins":[{"type":"fake"}]}"#)?;
//! let cni = CniConfig::new([tmp.join("bin")]).with_cache_dir(tmp.join("cache"));
//! for id in ["keep", "stale"] {
//!     cni.add(&net, &RuntimeConf::new(id, format!("/run/netns/{id}"), "eth0"))?;
//! }
//! // Everything not listed gets a DEL, then each plugin gets GC.
//! cni.gc(&net, &[GcAttachment { container_id: "keep".into(), ifname: "eth0".into() }])?;
//! let left: Vec<_> = cni.cached_attachments(None).into_iter().map(|a| a.container_id).collect();
//! assert_eq!(left, ["keep"]);
//! # std::fs::remove_dir_all(&tmp)?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Real plugins in a real namespace
//!
//! ```no_run
//! // Needs root, a namespace at /run/netns/pod1 and the reference plugins.
//! let net = runtime::load_network("/etc/cni/net.d", "mynet")?;
//! let cni = runtime::CniConfig::new(["/usr/lib/cni"]);
//! let rt = runtime::RuntimeConf::new("pod1", "/run/netns/pod1", "eth0");
//! let result = cni.add(&net, &rt)?;
//! println!("{}", result.to_json(&net.cni_version)?);
//! cni.del(&net, &rt)?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod api;
pub mod cache;
pub mod cnitool;
pub mod conf;
pub mod error;
mod gojson;

pub use api::{CniConfig, RuntimeConf};
pub use cache::{Attachment, Cache, CacheEntry, CACHE_KIND, DEFAULT_CACHE_DIR};
pub use conf::{conf_files, load_all, load_network, NetworkConfigList, PluginConfig};
pub use error::{Error, Result};
