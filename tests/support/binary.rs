//! The real `nextbest` binary as a child process on ephemeral loopback ports: for what only a
//! process shows (signals, kill -9, restarts, the command line, stderr).

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A command line for the binary, starting from the demo model and snapshot.
pub struct Binary {
    cmd: Command,
}

impl Binary {
    /// The demo model and snapshot, the given data folder, ephemeral ports, no folder watch.
    pub fn demo(data_dir: &Path) -> Self {
        Binary::with_models(&super::demo_dir(), data_dir)
    }

    /// A models folder (holding `features.csv`), the given data folder, ephemeral ports.
    pub fn with_models(models: &Path, data_dir: &Path) -> Self {
        Binary::listening(models, data_dir, "127.0.0.1:0", "127.0.0.1:0")
    }

    /// The demo model and snapshot and the given data folder, on the given listener addresses.
    pub fn demo_on(data_dir: &Path, public: &str, admin: &str) -> Self {
        Binary::listening(&super::demo_dir(), data_dir, public, admin)
    }

    /// A models folder mounted read-only for the server alone (as a Kubernetes ConfigMap
    /// volume is), through a private mount namespace (`unshare`, util-linux), ephemeral ports.
    /// Needs the right to mount, which root in a container has; without it the test fails
    /// with `unshare`'s own message.
    pub fn read_only_models(models: &Path, data_dir: &Path) -> Self {
        Binary::with_read_only(models, models, data_dir)
    }

    /// As [`Binary::with_models`], with `dir` mounted read-only for the server alone (as
    /// [`Binary::read_only_models`] mounts the models folder).
    pub fn with_read_only(dir: &Path, models: &Path, data_dir: &Path) -> Self {
        Binary::with_mount(r#"mount --bind -o ro "$1" "$1""#, dir, models, data_dir)
    }

    /// As [`Binary::with_models`], with a tmpfs of `size` (`64k`) mounted on `dir` for the
    /// server alone: a disk that fills, as an operator's does.
    pub fn with_small_disk(dir: &Path, size: &str, models: &Path, data_dir: &Path) -> Self {
        let mount = format!(r#"mount -t tmpfs -o size={size} tmpfs "$1""#);
        Binary::with_mount(&mount, dir, models, data_dir)
    }

    /// The server in a private mount namespace where `mount` (a shell command on `$1`, which
    /// is `dir`) ran first.
    fn with_mount(mount: &str, dir: &Path, models: &Path, data_dir: &Path) -> Self {
        let mut cmd = Command::new("unshare");
        cmd.args(["--mount", "--propagation", "private", "sh", "-c"])
            .arg(format!(r#"{mount} && shift && exec "$@""#))
            .arg("sh")
            .arg(dir)
            .arg(env!("CARGO_BIN_EXE_nextbest"));
        Binary::with_command(cmd, models, data_dir, "127.0.0.1:0", "127.0.0.1:0")
    }

    /// The demo with the open-file limits (soft, hard) set for the server alone (`ulimit`).
    pub fn demo_with_file_limit(data_dir: &Path, soft: &str, hard: &str) -> Self {
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg(format!(
                r#"ulimit -Sn {soft} && ulimit -Hn {hard} && exec "$@""#
            ))
            .arg("sh")
            .arg(env!("CARGO_BIN_EXE_nextbest"));
        Binary::with_command(
            cmd,
            &super::demo_dir(),
            data_dir,
            "127.0.0.1:0",
            "127.0.0.1:0",
        )
    }

    fn listening(models: &Path, data_dir: &Path, public: &str, admin: &str) -> Self {
        let cmd = Command::new(env!("CARGO_BIN_EXE_nextbest"));
        Binary::with_command(cmd, models, data_dir, public, admin)
    }

    fn with_command(
        mut cmd: Command,
        models: &Path,
        data_dir: &Path,
        public: &str,
        admin: &str,
    ) -> Self {
        cmd.args(["--listen", public, "--admin-listen", admin])
            .arg("--models")
            .arg(models)
            .arg("--features")
            .arg(models.join("features.csv"))
            .arg("--data-dir")
            .arg(data_dir)
            .arg("--no-watch")
            .env("NEXTBEST_LOG", "info")
            .env_remove("NEXTBEST_ADMIN_TOKEN")
            .env_remove("NEXTBEST_ADMIN_TOKEN_FILE")
            .env_remove("NEXTBEST_ADMIN_INSECURE")
            .env_remove("NEXTBEST_REDIS")
            .env_remove("NEXTBEST_REDIS_PASSWORD_FILE")
            .env_remove("NEXTBEST_READY_WHEN_BEHIND")
            .stdin(Stdio::null());
        Binary { cmd }
    }

    /// The binary run inside `dir` with only its ports set (ephemeral): paths on the command
    /// line are relative to `dir`, as a newcomer types them there.
    pub fn in_folder(dir: &Path) -> Self {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_nextbest"));
        cmd.current_dir(dir)
            .args(["--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"])
            .env("NEXTBEST_LOG", "info")
            .env_remove("NEXTBEST_ADMIN_TOKEN")
            .env_remove("NEXTBEST_REDIS")
            .env_remove("NEXTBEST_MODELS")
            .env_remove("NEXTBEST_FEATURES")
            .stdin(Stdio::null());
        Binary { cmd }
    }

    /// One more argument.
    pub fn arg(mut self, a: impl AsRef<std::ffi::OsStr>) -> Self {
        self.cmd.arg(a);
        self
    }

    /// More arguments.
    pub fn args<const N: usize>(mut self, a: [&str; N]) -> Self {
        self.cmd.args(a);
        self
    }

    /// One more environment variable.
    pub fn env(mut self, key: &str, value: impl AsRef<std::ffi::OsStr>) -> Self {
        self.cmd.env(key, value);
        self
    }

    /// Starts it with stdout a pipe nobody reads (closed at once) and stderr written to
    /// `stderr`: a server whose `| head -1` went away. Killed when dropped.
    #[allow(dead_code)]
    pub fn spawn_with_stdout_closed(mut self, stderr: &Path) -> KillOnDrop {
        let file = std::fs::File::create(stderr).expect("a file for stderr");
        let mut child = KillOnDrop(
            self.cmd
                .stdout(Stdio::piped())
                .stderr(file)
                .spawn()
                .expect("the binary runs"),
        );
        drop(child.0.stdout.take());
        child
    }

    /// Starts it and waits for its `nextbest listening` line.
    pub fn spawn(mut self) -> Process {
        let mut child = KillOnDrop(
            self.cmd
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap_or_else(|e| {
                    panic!("the binary (or unshare, for a read-only folder) does not start: {e}")
                }),
        );
        let stderr = Arc::new(Mutex::new(String::new()));
        let err = child.0.stderr.take().expect("stderr is piped");
        let sink = stderr.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                let mut s = sink.lock().unwrap();
                s.push_str(&line);
                s.push('\n');
            }
        });
        let stdout = child.0.stdout.take().expect("stdout is piped");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let line = std::iter::from_fn(|| rx.recv_timeout(Duration::from_secs(120)).ok())
            .take(10_000)
            .find(|l| l.starts_with("nextbest listening "))
            .unwrap_or_else(|| {
                panic!(
                    "the server did not announce its addresses; stderr:\n{}",
                    stderr.lock().unwrap()
                )
            });
        let addr = |key: &str| -> SocketAddr {
            line.split_whitespace()
                .find_map(|w| w.strip_prefix(key))
                .and_then(|a| a.parse().ok())
                .unwrap_or_else(|| panic!("no {key} in {line:?}"))
        };
        Process {
            public: addr("public="),
            admin: addr("admin="),
            child,
            stderr,
        }
    }

    /// Runs it to the end (for start-up refusals): exit status and stderr. A process still
    /// running after 60 s fails the test (it started when it should have refused).
    pub fn run_to_exit(mut self) -> (std::process::ExitStatus, String) {
        let mut child = KillOnDrop(
            self.cmd
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .expect("the binary runs"),
        );
        let mut err = child.0.stderr.take().expect("stderr is piped");
        let reader = std::thread::spawn(move || {
            let mut text = Vec::new();
            let _ = std::io::Read::read_to_end(&mut err, &mut text);
            String::from_utf8_lossy(&text).into_owned()
        });
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        let status = loop {
            if let Some(status) = child.0.try_wait().expect("the binary can be waited for") {
                break status;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the binary was expected to exit but still runs after 60 s"
            );
            std::thread::sleep(Duration::from_millis(10));
        };
        (status, reader.join().expect("stderr is read"))
    }
}

/// A child process, killed (SIGKILL) and reaped when dropped, also when an assertion fails.
pub struct KillOnDrop(pub Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The running binary.
pub struct Process {
    /// Public listener.
    pub public: SocketAddr,
    /// Admin listener.
    pub admin: SocketAddr,
    /// The child; killed when dropped.
    pub child: KillOnDrop,
    stderr: Arc<Mutex<String>>,
}

impl Process {
    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.0.id()
    }

    /// Sends a signal by name (`HUP`, `TERM`, `KILL`).
    pub fn signal(&self, name: &str) {
        let ok = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.pid().to_string())
            .status()
            .expect("kill runs")
            .success();
        assert!(ok, "kill -{name} {} failed", self.pid());
    }

    /// What it has written to stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Waits (up to 20 s) until its stderr holds `needle`; the whole stderr either way.
    pub fn wait_stderr(&self, needle: &str) -> String {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            let text = self.stderr();
            if text.contains(needle) || std::time::Instant::now() > deadline {
                return text;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Stops it with SIGTERM and requires a clean exit (its stderr otherwise).
    pub fn stop(mut self) {
        self.signal("TERM");
        let status = self.child.0.wait().unwrap();
        assert!(status.success(), "{}", self.stderr());
    }

    /// Kills it with SIGKILL and waits for it to be gone.
    pub fn kill9(mut self) {
        let _ = self.child.0.kill();
        let _ = self.child.0.wait();
    }
}
