//! A real etcd (Debian's `etcd-server`, 3.4) for the tests: its own temp
//! data dir, listening only on 127.0.0.1 with ports nobody else holds,
//! killed and its directory removed on drop.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// TLS files for an `https://` etcd: server certificate and key, the CA
/// that client certificates must be signed by, and a client certificate
/// for the health probe.
pub struct EtcdTls<'a> {
    pub ca: &'a Path,
    pub cert: &'a Path,
    pub key: &'a Path,
    pub client_cert: &'a Path,
    pub client_key: &'a Path,
}

type TlsFiles = (PathBuf, PathBuf, PathBuf, PathBuf, PathBuf);

pub struct Etcd {
    child: Option<Child>,
    dir: PathBuf,
    /// `http(s)://127.0.0.1:PORT`.
    pub url: String,
    peer_port: u16,
    tls: Option<TlsFiles>,
    /// The network namespace it runs in (`ip netns` name), if not ours.
    netns: Option<String>,
    host: String,
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

impl Etcd {
    /// A plain-HTTP etcd.
    pub fn start() -> Etcd {
        Self::start_with(None)
    }

    /// An etcd serving `https://` with `tls`, requiring client
    /// certificates signed by its CA.
    pub fn start_tls(tls: &EtcdTls) -> Etcd {
        Self::start_with(Some((
            tls.ca.to_path_buf(),
            tls.cert.to_path_buf(),
            tls.key.to_path_buf(),
            tls.client_cert.to_path_buf(),
            tls.client_key.to_path_buf(),
        )))
    }

    /// A plain-HTTP etcd inside the network namespace `netns` (an `ip
    /// netns` name), listening on `ip` (an address there), ports 2379 and
    /// 2380 (the namespace is the test's own).
    pub fn start_in(netns: &str, ip: &str) -> Etcd {
        let dir = Self::new_dir();
        let mut e = Etcd {
            child: None,
            dir,
            url: format!("http://{ip}:2379"),
            peer_port: 2380,
            tls: None,
            netns: Some(netns.to_string()),
            host: ip.to_string(),
        };
        e.spawn();
        assert!(
            e.wait_healthy(Duration::from_secs(15)),
            "etcd did not start:\n{}",
            e.log()
        );
        e
    }

    fn new_dir() -> PathBuf {
        static COUNT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = COUNT.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let dir = std::env::temp_dir().join(format!("rcni-etcd-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// `program` in etcd's network namespace.
    fn command(&self, program: &str) -> Command {
        match &self.netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, program]);
                c
            }
            None => Command::new(program),
        }
    }

    fn start_with(tls: Option<TlsFiles>) -> Etcd {
        let dir = Self::new_dir();
        let scheme = if tls.is_some() { "https" } else { "http" };
        let mut last_log = String::new();
        // A port picked here may be taken before etcd binds it: try again.
        for _ in 0..5 {
            let port = free_port();
            let peer_port = free_port();
            let mut e = Etcd {
                child: None,
                dir: dir.clone(),
                url: format!("{scheme}://127.0.0.1:{port}"),
                peer_port,
                tls: tls.clone(),
                netns: None,
                host: "127.0.0.1".into(),
            };
            e.spawn();
            if e.wait_healthy(Duration::from_secs(15)) {
                return e;
            }
            last_log = e.log();
            e.kill();
            // The directory is reused by the next try.
            e.dir = PathBuf::new();
            let _ = std::fs::remove_dir_all(dir.join("data"));
            let _ = std::fs::remove_file(dir.join("etcd.log"));
        }
        let _ = std::fs::remove_dir_all(&dir);
        panic!("etcd did not start:\n{last_log}");
    }

    fn spawn(&mut self) {
        let peer = format!("http://{}:{}", self.host, self.peer_port);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("etcd.log"))
            .unwrap();
        let mut cmd = self.command("etcd");
        cmd.arg("--name=t")
            .arg(format!("--data-dir={}", self.dir.join("data").display()))
            .arg(format!("--listen-client-urls={}", self.url))
            .arg(format!("--advertise-client-urls={}", self.url))
            .arg(format!("--listen-peer-urls={peer}"))
            .arg(format!("--initial-advertise-peer-urls={peer}"))
            .arg(format!("--initial-cluster=t={peer}"))
            .arg("--log-level=warn")
            .arg("--logger=zap")
            .arg("--log-outputs=stderr")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        if let Some((ca, cert, key, _, _)) = &self.tls {
            cmd.arg(format!("--trusted-ca-file={}", ca.display()))
                .arg(format!("--cert-file={}", cert.display()))
                .arg(format!("--key-file={}", key.display()))
                .arg("--client-cert-auth");
        }
        self.child = Some(cmd.spawn().expect("etcd (apt-get install etcd-server)"));
    }

    /// `etcdctl` against this etcd (with the client certificate given).
    pub fn ctl(&self, client: Option<(&Path, &Path)>) -> Command {
        let mut cmd = self.command("etcdctl");
        cmd.env("ETCDCTL_API", "3")
            .arg(format!("--endpoints={}", self.url))
            .arg("--dial-timeout=2s");
        if let Some((ca, _, _, _, _)) = &self.tls {
            cmd.arg(format!("--cacert={}", ca.display()));
        }
        if let Some((cert, key)) = client {
            cmd.arg(format!("--cert={}", cert.display()))
                .arg(format!("--key={}", key.display()));
        }
        cmd
    }

    /// `etcdctl put KEY VALUE` (plain-HTTP etcd only); asserts success.
    pub fn put(&self, key: &str, value: &str) {
        let out = self.ctl(None).args(["put", key, value]).output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn wait_healthy(&mut self, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        let client = self
            .tls
            .as_ref()
            .map(|(_, _, _, c, k)| (c.clone(), k.clone()));
        while Instant::now() < deadline {
            if let Some(Ok(Some(_))) = self.child.as_mut().map(|c| c.try_wait()) {
                return false;
            }
            let ok = self
                .ctl(client.as_ref().map(|(c, k)| (c.as_path(), k.as_path())))
                .args(["endpoint", "health"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if ok {
                return true;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        false
    }

    /// What etcd logged.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("etcd.log")).unwrap_or_default()
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Stops etcd (SIGKILL), keeping its data.
    pub fn stop(&mut self) {
        self.kill();
    }

    /// Starts it again on the same address and data (after [`Etcd::stop`]).
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
        assert!(
            self.wait_healthy(Duration::from_secs(15)),
            "etcd did not restart:\n{}",
            self.log()
        );
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        self.kill();
        if !self.dir.as_os_str().is_empty() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}
