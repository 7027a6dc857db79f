//! The Streamlit dashboard as a child process of `up`: a cached venv made on first run, the app
//! compiled into the binary (so the dashboard always matches the server), Streamlit headless on 127.0.0.1.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;
use sha2::{Digest, Sha256};

const APP: &str = include_str!("../../clients/streamlit/app.py");
const REQUIREMENTS: &str = include_str!("../../clients/streamlit/requirements.txt");

/// Where vitalflow caches what it installs: `$VITALFLOW_CACHE`, else `~/.cache/vitalflow`.
pub fn cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("VITALFLOW_CACHE") {
        return PathBuf::from(dir);
    }
    let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("."), PathBuf::from);
    home.join(".cache").join("vitalflow")
}

/// A venv with the dashboard's packages and the app file.
#[derive(Debug, Clone)]
pub struct DashboardEnv {
    python: PathBuf,
    app: PathBuf,
}

/// Makes (once per requirements file) the venv and writes the app. Blocking; minutes on first run.
pub fn prepare(python: &str, cache: &Path) -> anyhow::Result<DashboardEnv> {
    let hash = hex(&Sha256::digest(format!("{python}\n{REQUIREMENTS}")))[..12].to_string();
    let venv = cache.join(format!("dashboard-venv-{hash}"));
    let venv_python = venv.join("bin").join("python");
    let complete = venv.join(".vitalflow-complete");
    if !complete.exists() {
        eprintln!(
            "vitalflow up: preparing the dashboard's Python environment in {} (first run only, about a minute)",
            venv.display()
        );
        if venv.exists() {
            std::fs::remove_dir_all(&venv).with_context(|| format!("removing the half-made {}", venv.display()))?;
        }
        std::fs::create_dir_all(cache).with_context(|| format!("creating {}", cache.display()))?;
        run(Command::new(python).arg("-m").arg("venv").arg(&venv), &format!("{python} -m venv"))?;
        let requirements = venv.join("requirements.txt");
        std::fs::write(&requirements, REQUIREMENTS)?;
        run(
            Command::new(&venv_python)
                .args(["-m", "pip", "install", "--quiet", "--disable-pip-version-check", "-r"])
                .arg(&requirements),
            "pip install of the dashboard's packages",
        )?;
        std::fs::write(&complete, b"")?;
    }
    let app = venv.join("vitalflow_dashboard.py");
    std::fs::write(&app, APP).with_context(|| format!("writing {}", app.display()))?;
    Ok(DashboardEnv { python: venv_python, app })
}

fn run(cmd: &mut Command, what: &str) -> anyhow::Result<()> {
    let out = cmd.stdin(Stdio::null()).output().with_context(|| format!("running {what}"))?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let tail: Vec<_> = stderr.lines().rev().take(15).collect();
        anyhow::bail!("{what} failed ({}):\n{}", out.status, tail.into_iter().rev().collect::<Vec<_>>().join("\n"));
    }
    Ok(())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The running Streamlit process (its own process group, so that stopping it stops its children too).
#[derive(Debug)]
pub struct Dashboard {
    child: Child,
}

impl Dashboard {
    /// Starts Streamlit headless on `127.0.0.1:port`, reading Flight SQL at `flight_sql` and acting on
    /// alerts through the HTTP API at `http` (when it runs).
    ///
    /// Call from the thread that lives as long as `up` (the main thread): the child is told to
    /// terminate when its parent thread ends, so that even a `kill -9` of `up` leaves no dashboard behind.
    pub fn spawn(
        env: &DashboardEnv,
        port: u16,
        flight_sql: &str,
        http: Option<&str>,
        log: &Path,
    ) -> anyhow::Result<Dashboard> {
        let log_file = std::fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
        let mut cmd = Command::new(&env.python);
        cmd.args(["-m", "streamlit", "run"])
            .arg(&env.app)
            .args(["--server.headless", "true", "--server.address", "127.0.0.1", "--server.port"])
            .arg(port.to_string())
            .args([
                "--browser.gatherUsageStats",
                "false",
                "--server.fileWatcherType",
                "none",
                "--global.developmentMode",
                "false",
            ])
            .env("VITALFLOW_FLIGHT_SQL_URL", flight_sql)
            .env("STREAMLIT_BROWSER_GATHER_USAGE_STATS", "false")
            .stdin(Stdio::null())
            .stdout(log_file.try_clone()?)
            .stderr(log_file)
            .process_group(0);
        // SAFETY: prctl is async-signal-safe and touches no memory of the parent.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
                Ok(())
            });
        }
        if let Some(http) = http {
            cmd.env("VITALFLOW_HTTP_URL", http);
        }
        let child = cmd.spawn().with_context(|| format!("starting streamlit with {}", env.python.display()))?;
        Ok(Dashboard { child })
    }

    /// The process id (also its process group id).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether it has exited.
    pub fn exited(&mut self) -> bool {
        !matches!(self.child.try_wait(), Ok(None))
    }

    /// SIGTERM to its process group, SIGKILL after `grace`.
    pub fn stop(mut self, grace: Duration) {
        let group = -(self.child.id() as i32);
        // SAFETY: kill(2) on our own child's process group.
        unsafe { libc::kill(group, libc::SIGTERM) };
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        // Whatever is left of the group (Streamlit's own children included).
        unsafe { libc::kill(group, libc::SIGKILL) };
        let _ = self.child.wait();
    }
}

/// Whether Streamlit answers its health check on `127.0.0.1:port`.
pub async fn healthy(port: u16) -> bool {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Ok(mut stream) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await else { return false };
    let request = format!("GET /_stcore/health HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\n\r\n");
    if stream.write_all(request.as_bytes()).await.is_err() {
        return false;
    }
    let mut response = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(2), stream.read_to_end(&mut response)).await;
    matches!(read, Ok(Ok(_))) && (response.starts_with(b"HTTP/1.1 200") || response.starts_with(b"HTTP/1.0 200"))
}
