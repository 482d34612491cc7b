//! A private libvirtd for tests: runs as `nobody` in session mode with every directory (socket,
//! config, cache, runtime) in its own temp dir, so it never touches the system daemon or its
//! guests. The test driver is served through it: `test+unix:///default?socket=...`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running private libvirtd; killed (by PID) on drop.
pub struct Libvirtd {
    dir: tempfile::TempDir,
    child: Option<Child>,
}

const LIBVIRTD: &str = "/usr/sbin/libvirtd";

impl Libvirtd {
    /// Starts the daemon and waits (bounded) until its socket accepts connections.
    pub fn start() -> Libvirtd {
        assert!(
            Path::new(LIBVIRTD).exists(),
            "{LIBVIRTD} is missing: run scripts/deps test (Debian package libvirt-daemon)"
        );
        let dir = tempfile::Builder::new()
            .prefix("vmtel-libvirtd-")
            .tempdir()
            .expect("temp dir");
        set_mode(dir.path(), 0o777);
        let conf = dir.path().join("libvirtd.conf");
        std::fs::write(
            &conf,
            format!("unix_sock_dir = \"{}\"\n", dir.path().display()),
        )
        .expect("write libvirtd.conf");
        set_mode(&conf, 0o644);
        let mut d = Libvirtd { dir, child: None };
        d.restart();
        d
    }

    /// The socket path.
    pub fn socket(&self) -> PathBuf {
        self.dir.path().join("libvirt-sock")
    }

    /// `test+unix:///default?socket=...`
    pub fn test_uri(&self) -> String {
        format!("test+unix:///default?socket={}", self.socket().display())
    }

    /// Kills the daemon with SIGKILL and waits for it to exit.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_file(self.socket());
    }

    /// Sends a signal (`STOP`, `CONT`, ...) to the daemon.
    pub fn signal(&self, sig: &str) {
        let child = self.child.as_ref().expect("libvirtd is running");
        let ok = Command::new("kill")
            .args([&format!("-{sig}"), &child.id().to_string()])
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        assert!(ok, "kill -{sig} libvirtd failed");
    }

    /// (Re)starts the daemon and waits until it answers.
    pub fn restart(&mut self) {
        self.kill();
        let d = self.dir.path();
        let log = std::fs::File::create(d.join("libvirtd.log")).expect("log file");
        set_mode(&d.join("libvirtd.log"), 0o666);
        // setpriv execs libvirtd itself, so the child's PID is the daemon's.
        let child = Command::new("setpriv")
            .args([
                "--reuid=nobody",
                "--regid=nogroup",
                "--clear-groups",
                "--",
                LIBVIRTD,
                "--config",
            ])
            .arg(d.join("libvirtd.conf"))
            .env("HOME", d)
            .env("XDG_RUNTIME_DIR", d)
            .env("XDG_CONFIG_HOME", d.join("config"))
            .env("XDG_CACHE_HOME", d.join("cache"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start libvirtd");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let ok = Command::new("virsh")
                .args(["-q", "-c", &self.test_uri(), "list"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .map(|s| s.success())
                .unwrap_or(false);
            if ok {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "private libvirtd did not answer within 30 s; log: {}",
                std::fs::read_to_string(d.join("libvirtd.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Libvirtd {
    fn drop(&mut self) {
        self.kill();
    }
}

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}
