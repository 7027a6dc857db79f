//! `<data>/_run`: the pid file, log and addresses of a running `up`, so that `vitalflow stop` (the seed's
//! stop script) finds it and two `up`s never share one data directory. With the data on object storage
//! (`--data s3://bucket/prefix`), the run directory is local: `~/.cache/vitalflow/run/<bucket>/<prefix>`.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;
use std::os::unix::process::CommandExt;
use vitalflow_udf_model::lake::DataLocation;

/// The run directory of one data location.
#[derive(Debug, Clone)]
pub struct RunDir {
    dir: PathBuf,
}

const PID_FILE: &str = "up.pid";
/// Addresses of the running `up` (the same JSON as `--ready-file`).
pub const ADDRS_FILE: &str = "up.json";
const LOG_FILE: &str = "up.log";

impl RunDir {
    /// `<data>/_run` of a local data location; a local directory named after the URL for another store.
    pub fn new(location: &DataLocation) -> anyhow::Result<RunDir> {
        let dir = match location.url().to_file_path() {
            Ok(data) => data.join("_run"),
            Err(()) => {
                let cache = std::env::var_os("VITALFLOW_CACHE")
                    .map(PathBuf::from)
                    .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/vitalflow")))
                    .context("neither VITALFLOW_CACHE nor HOME is set: no place for the run directory")?;
                let url = location.url();
                let name: String = format!("{}{}", url.host_str().unwrap_or_default(), url.path())
                    .chars()
                    .map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '.' { c } else { '_' })
                    .collect();
                cache.join("run").join(name)
            }
        };
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        Ok(RunDir { dir })
    }

    /// A file in the run directory.
    pub fn file(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// The pid of a live `up` on this data directory, if any.
    fn running(&self) -> Option<u32> {
        let pid: u32 = std::fs::read_to_string(self.file(PID_FILE)).ok()?.trim().parse().ok()?;
        // A stale pid file may name a recycled pid: only a live vitalflow process counts.
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
        String::from_utf8_lossy(&cmdline).contains("vitalflow").then_some(pid)
    }

    /// Records this process as the `up` of the data directory; refuses when another one runs.
    pub fn claim(&self) -> anyhow::Result<()> {
        if let Some(pid) = self.running().filter(|&p| p != std::process::id()) {
            anyhow::bail!(
                "vitalflow up is already running on this data directory (pid {pid}); stop it with `vitalflow stop` \
                 or use another --data"
            );
        }
        let _ = std::fs::remove_file(self.file(ADDRS_FILE));
        std::fs::write(self.file(PID_FILE), std::process::id().to_string())
            .with_context(|| format!("writing {}", self.file(PID_FILE).display()))
    }

    /// Removes the pid and address files if they are this process's.
    pub fn release(&self) {
        if std::fs::read_to_string(self.file(PID_FILE)).is_ok_and(|p| p.trim() == std::process::id().to_string()) {
            let _ = std::fs::remove_file(self.file(PID_FILE));
            let _ = std::fs::remove_file(self.file(ADDRS_FILE));
        }
    }

    /// Starts this same command without `--detach` in its own session, logging to `_run/up.log`,
    /// waits until it is ready and prints where it runs.
    pub fn detach(&self) -> anyhow::Result<()> {
        if let Some(pid) = self.running() {
            anyhow::bail!(
                "vitalflow up is already running on this data directory (pid {pid}); stop it with `vitalflow stop`"
            );
        }
        let _ = std::fs::remove_file(self.file(ADDRS_FILE));
        let log_path = self.file(LOG_FILE);
        let log = std::fs::File::create(&log_path).with_context(|| format!("creating {}", log_path.display()))?;
        let exe = std::env::current_exe().context("finding the vitalflow binary")?;
        let mut cmd = Command::new(exe);
        cmd.args(std::env::args_os().skip(1).filter(|a| a != "--detach"))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        // SAFETY: setsid(2) in the child before exec; it touches no parent memory.
        unsafe {
            cmd.pre_exec(|| {
                libc::setsid();
                Ok(())
            });
        }
        let mut child = cmd.spawn().context("starting vitalflow up in the background")?;
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            if let Ok(addrs) = std::fs::read_to_string(self.file(ADDRS_FILE)) {
                eprintln!(
                    "vitalflow up is running in the background (pid {}); log: {}",
                    child.id(),
                    log_path.display()
                );
                println!("{addrs}");
                eprintln!("Stop it with: vitalflow --data {} stop", self.dir.parent().unwrap_or(&self.dir).display());
                return Ok(());
            }
            if let Some(status) = child.try_wait()? {
                let text = std::fs::read_to_string(&log_path).unwrap_or_default();
                let tail: Vec<_> = text.lines().rev().take(20).collect();
                anyhow::bail!(
                    "vitalflow up exited ({status}) while starting:\n{}",
                    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                );
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "vitalflow up did not get ready within 120 s; see {}",
                log_path.display()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// `vitalflow stop`: SIGTERM to the running `up`, SIGKILL if it has not exited after `grace`.
    pub fn stop(&self, grace: Duration) -> anyhow::Result<()> {
        let Some(pid) = self.running() else {
            eprintln!(
                "vitalflow stop: no vitalflow up is running on {}",
                self.dir.parent().unwrap_or(&self.dir).display()
            );
            let _ = std::fs::remove_file(self.file(PID_FILE));
            return Ok(());
        };
        let alive = || std::path::Path::new(&format!("/proc/{pid}")).exists() && !is_zombie(pid);
        // SAFETY: kill(2) with a pid read from our own pid file, checked to be a vitalflow process.
        unsafe { libc::kill(pid as i32, libc::SIGTERM) };
        let deadline = Instant::now() + grace;
        while alive() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
        }
        if alive() {
            eprintln!("vitalflow stop: pid {pid} did not stop within {} s; killing it", grace.as_secs());
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
        }
        let _ = std::fs::remove_file(self.file(PID_FILE));
        let _ = std::fs::remove_file(self.file(ADDRS_FILE));
        eprintln!("vitalflow stop: stopped vitalflow up (pid {pid})");
        Ok(())
    }
}

fn is_zombie(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s.rsplit_once(')').map(|(_, rest)| rest.trim_start().starts_with('Z')))
        .unwrap_or(false)
}
