//! Test hosts reached over SSH, all on this machine: an [`SshLab`] holds one client key
//! pair, a `known_hosts` and an `ssh_config` made for the run; each [`SshHost`] it starts
//! is a real `sshd` (`/usr/sbin/sshd`) on its own loopback address (127.0.0.2, .3, ...) and
//! a free port, with a host key made for the run, accepting the current user with the
//! lab's key only. Dropping a host stops its sshd and every process started under its
//! root (servers started over SSH daemonize, so they are not the sshd's children); a
//! failing test stops them too.
//!
//! ```ignore
//! let lab = SshLab::new();
//! let host = lab.host();                 // sshd on 127.0.0.2, key known
//! lz.run(&format!("node add addr {} persistent_path {} ssh {}",
//!     host.addr, host.path("n1").display(), host.target()))
//!   .env("LAZARUS_SSH_CONFIG", lab.config());
//! ```
//!
//! Runs as root (CI) or as any user: sshd's privilege separation directory is made when
//! root and missing; `StrictModes no` because the temporary files live under /tmp;
//! `UsePAM no` so no system account setup is needed; root may log in by key only.

use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::{Duration, Instant};

use super::procs::ProcessGuard;

pub const SSHD: &str = "/usr/sbin/sshd";

/// The client side of the test hosts: one key pair, one known_hosts, one ssh_config.
pub struct SshLab {
    dir: tempfile::TempDir,
}

/// Loopback addresses handed out to hosts: 127.0.0.2 upwards, across the whole test
/// binary, so two hosts of one run never share an address.
static NEXT_ADDR: AtomicU8 = AtomicU8::new(2);

impl Default for SshLab {
    fn default() -> Self {
        SshLab::new()
    }
}

impl SshLab {
    pub fn new() -> SshLab {
        let dir = tempfile::tempdir().expect("a temp dir");
        keygen(&dir.path().join("id_ed25519"));
        std::fs::write(dir.path().join("known_hosts"), "").unwrap();
        let config = format!(
            "Host *\n  UserKnownHostsFile {kh}\n  GlobalKnownHostsFile /dev/null\n  \
             IdentityFile {key}\n  IdentitiesOnly yes\n  IdentityAgent none\n  \
             StrictHostKeyChecking yes\n  BatchMode yes\n  PasswordAuthentication no\n  \
             LogLevel ERROR\n",
            kh = dir.path().join("known_hosts").display(),
            key = dir.path().join("id_ed25519").display(),
        );
        std::fs::write(dir.path().join("ssh_config"), config).unwrap();
        SshLab { dir }
    }

    /// The ssh_config to give the client (`ssh -F`, or `LAZARUS_SSH_CONFIG`).
    pub fn config(&self) -> PathBuf {
        self.dir.path().join("ssh_config")
    }

    /// The client's private key (for `ssh_key <path>`).
    pub fn key(&self) -> PathBuf {
        self.dir.path().join("id_ed25519")
    }

    pub fn known_hosts(&self) -> PathBuf {
        self.dir.path().join("known_hosts")
    }

    /// A host on the next loopback address, its key in the lab's known_hosts.
    pub fn host(&self) -> SshHost {
        let host = self.host_unknown();
        let mut kh = std::fs::OpenOptions::new()
            .append(true)
            .open(self.known_hosts())
            .unwrap();
        writeln!(kh, "{}", host.known_hosts_line()).unwrap();
        host
    }

    /// A host whose key the lab has never seen (strict checking refuses it).
    pub fn host_unknown(&self) -> SshHost {
        let n = NEXT_ADDR.fetch_add(1, Ordering::Relaxed);
        assert!(n < 255, "out of loopback addresses");
        SshHost::start(
            &format!("127.0.0.{n}"),
            &self.dir.path().join("id_ed25519.pub"),
        )
    }

    /// Runs `ssh` with the lab's config against `host`: for a test's own checks.
    pub fn ssh(&self, host: &SshHost, command: &str) -> std::process::Output {
        Command::new("ssh")
            .arg("-F")
            .arg(self.config())
            .args(["-p", &host.port.to_string()])
            .arg(format!("{}@{}", host.user, host.addr))
            .arg("--")
            .arg(command)
            .stdin(Stdio::null())
            .output()
            .expect("ssh runs")
    }
}

/// One `sshd` on its own loopback address; stopped with everything under its root on drop.
pub struct SshHost {
    pub addr: String,
    pub port: u16,
    pub user: String,
    root: tempfile::TempDir,
    sshd: Option<Child>,
    guard: Option<ProcessGuard>,
}

impl SshHost {
    fn start(addr: &str, client_pub: &Path) -> SshHost {
        let root = tempfile::tempdir().expect("a temp dir");
        let r = root.path();
        keygen(&r.join("host_ed25519"));
        std::fs::copy(client_pub, r.join("authorized_keys")).unwrap();
        std::fs::create_dir_all(r.join("data")).unwrap();
        if is_root() {
            // Debian's service makes it at boot; sshd refuses to start as root without it.
            let _ = std::fs::create_dir_all("/run/sshd");
        }
        let user = current_user();
        let guard = ProcessGuard::new(r);
        // A port found free may be taken before sshd binds it: try a few.
        for _ in 0..5 {
            let port = free_port(addr);
            let config = format!(
                "ListenAddress {addr}:{port}\nHostKey {hk}\nPidFile {pid}\n\
                 AuthorizedKeysFile {ak}\nPubkeyAuthentication yes\n\
                 PasswordAuthentication no\nKbdInteractiveAuthentication no\n\
                 PermitRootLogin prohibit-password\nStrictModes no\nUsePAM no\n\
                 AllowUsers {user}\nMaxSessions 100\nMaxStartups 100\n\
                 AllowTcpForwarding no\nX11Forwarding no\nLogLevel ERROR\n",
                hk = r.join("host_ed25519").display(),
                pid = r.join("sshd.pid").display(),
                ak = r.join("authorized_keys").display(),
            );
            std::fs::write(r.join("sshd_config"), config).unwrap();
            let log = std::fs::File::create(r.join("sshd.log")).unwrap();
            let mut child = Command::new(SSHD)
                .arg("-D")
                .arg("-e")
                .arg("-f")
                .arg(r.join("sshd_config"))
                .current_dir(r)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .expect("/usr/sbin/sshd runs (apt-get install openssh-server)");
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                if TcpStream::connect((addr, port)).is_ok() {
                    return SshHost {
                        addr: addr.to_string(),
                        port,
                        user,
                        root,
                        sshd: Some(child),
                        guard: Some(guard),
                    };
                }
                if child.try_wait().unwrap().is_some() || Instant::now() > deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        panic!(
            "sshd did not start on {addr}:\n{}",
            std::fs::read_to_string(r.join("sshd.log")).unwrap_or_default()
        );
    }

    /// `[user@]addr:port`, as `node add ... ssh` takes it.
    pub fn target(&self) -> String {
        format!("{}@{}:{}", self.user, self.addr, self.port)
    }

    /// The host's root: node paths live under it, so the host's drop stops their servers.
    pub fn root(&self) -> &Path {
        self.root.path()
    }

    /// A path for node data on this host.
    pub fn path(&self, rel: &str) -> PathBuf {
        self.root.path().join("data").join(rel)
    }

    /// This host's line for a known_hosts file.
    pub fn known_hosts_line(&self) -> String {
        let public = std::fs::read_to_string(self.root.path().join("host_ed25519.pub")).unwrap();
        let mut parts = public.split_whitespace();
        let (kind, key) = (parts.next().unwrap(), parts.next().unwrap());
        format!("[{}]:{} {kind} {key}", self.addr, self.port)
    }

    /// Pids of processes working under this host's root (servers it runs).
    pub fn pids(&self) -> Vec<u32> {
        self.guard.as_ref().map(|g| g.pids()).unwrap_or_default()
    }

    /// The host hangs: its sshd (and every session it runs) is frozen, so connections
    /// are accepted and never answered, until [`SshHost::thaw`].
    pub fn freeze(&self) {
        self.signal_sshd(libc::SIGSTOP);
    }

    pub fn thaw(&self) {
        self.signal_sshd(libc::SIGCONT);
    }

    fn signal_sshd(&self, signal: libc::c_int) {
        if let Some(child) = &self.sshd {
            let sessions = descendants(child.id());
            for pid in std::iter::once(child.id()).chain(sessions) {
                // SAFETY: kill(2) takes plain integers; these are this host's sshd.
                unsafe {
                    libc::kill(pid as libc::pid_t, signal);
                }
            }
        }
    }

    /// The host is lost: its sshd and every process under it stop (its disk stays).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.sshd.take() {
            // Its per-connection sessions outlive the listener: stop them first.
            for pid in descendants(child.id()) {
                // SAFETY: kill(2) takes plain integers.
                unsafe {
                    libc::kill(pid as libc::pid_t, libc::SIGKILL);
                }
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        if let Some(guard) = &self.guard {
            guard.kill_all();
        }
    }
}

impl Drop for SshHost {
    fn drop(&mut self) {
        self.stop();
        // Sessions sshd forked for connections still open run as their own processes.
        self.guard.take();
    }
}

/// Every process below `pid` (children, their children, ...), deepest last.
fn descendants(pid: u32) -> Vec<u32> {
    let parents: Vec<(u32, u32)> = std::fs::read_dir("/proc")
        .map(|d| {
            d.flatten()
                .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
                .filter_map(|p| {
                    let stat = std::fs::read_to_string(format!("/proc/{p}/stat")).ok()?;
                    let (_, rest) = stat.rsplit_once(')')?;
                    Some((p, rest.split_whitespace().nth(1)?.parse().ok()?))
                })
                .collect()
        })
        .unwrap_or_default();
    let mut out = vec![pid];
    let mut i = 0;
    while i < out.len() {
        let parent = out[i];
        out.extend(
            parents
                .iter()
                .filter(|(_, pp)| *pp == parent)
                .map(|(p, _)| *p),
        );
        i += 1;
    }
    out.remove(0);
    out
}

fn keygen(path: &Path) {
    let out = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "lazarus-test", "-f"])
        .arg(path)
        .stdin(Stdio::null())
        .output()
        .expect("ssh-keygen runs");
    assert!(
        out.status.success(),
        "ssh-keygen: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn free_port(addr: &str) -> u16 {
    TcpListener::bind((addr, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("no free port on {addr}: {e}"))
}

fn is_root() -> bool {
    // SAFETY: geteuid takes no arguments and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

fn current_user() -> String {
    let out = Command::new("id").arg("-un").output().expect("id runs");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}
