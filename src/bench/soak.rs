//! `vitalflow-bench soak`: `vitalflow up` left running at the seed's pace (50 patients, one reading each
//! per second, no dashboard), sampled at a fixed interval: the process's CPU over the interval (share of
//! one core), its resident memory and the data folder's file count. At the end, the figures after the
//! warm-up against what a service left running for months needs: at most 5% of one core, memory within
//! +50 MB per hour, and a file count that stops growing.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use super::cli::BenchSoakArgs;

/// Most CPU a steady ward may take, in % of one core.
const CPU_GOAL_PERCENT: f64 = 5.0;
/// Most memory growth per hour after the warm-up, in MB.
const RSS_GOAL_MB_PER_HOUR: f64 = 50.0;

/// One sample of the running process.
#[derive(Debug, Clone, Copy)]
struct Sample {
    /// Seconds since `up` started.
    at: f64,
    /// CPU seconds the process has used (user + system, every thread).
    cpu_seconds: f64,
    /// Resident memory, MB.
    rss_mb: f64,
    /// Files under the data folder.
    files: u64,
}

/// Runs `up` for `--minutes` and prints a row per sample and the drift after the warm-up.
pub fn run(args: &BenchSoakArgs) -> anyhow::Result<()> {
    if !(args.minutes > args.warmup_minutes && args.interval_seconds > 0.0) {
        bail!("--minutes must exceed --warmup-minutes, and --interval-seconds be above 0");
    }
    let vitalflow = std::env::current_exe()
        .context("finding the benchmark binary")?
        .with_file_name(format!("vitalflow{}", std::env::consts::EXE_SUFFIX));
    if !vitalflow.is_file() {
        bail!(
            "{} is missing: build it beside vitalflow-bench (cargo build --release --features bench)",
            vitalflow.display()
        );
    }
    let work = tempfile::tempdir().context("creating a temporary directory")?;
    let data = work.path().join("data");
    let log = std::fs::File::create(work.path().join("up.log")).context("creating the log file")?;
    let mut child = Command::new(&vitalflow)
        .arg("--data")
        .arg(&data)
        .args(["up", "--no-dashboard", "--flight-sql-port", "0", "--http-port", "0", "--broker-port", "0"])
        .args(["--patients", &args.patients.to_string(), "--rate", &args.rate.to_string()])
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .with_context(|| format!("starting {}", vitalflow.display()))?;
    println!(
        "vitalflow bench soak: `vitalflow up` with {} patients at {} readings/s for {} min (warm-up {} min), a sample every {} s",
        args.patients, args.rate, args.minutes, args.warmup_minutes, args.interval_seconds
    );
    let result = sample(&mut child, &data, args);
    stop(&mut child);
    let samples = result?;
    report(&samples, args.warmup_minutes * 60.0);
    Ok(())
}

/// Samples `child` until `--minutes` have passed (or it exits, which is an error).
fn sample(child: &mut Child, data: &Path, args: &BenchSoakArgs) -> anyhow::Result<Vec<Sample>> {
    let started = Instant::now();
    let ticks = clock_ticks_per_second();
    let interval = Duration::from_secs_f64(args.interval_seconds);
    let mut samples: Vec<Sample> = Vec::new();
    println!("{:>8} {:>12} {:>10} {:>8}", "minute", "CPU % core", "RSS MB", "files");
    while started.elapsed().as_secs_f64() < args.minutes * 60.0 {
        std::thread::sleep(interval);
        if let Some(status) = child.try_wait().context("watching up")? {
            bail!("`vitalflow up` exited ({status}); its log is in the benchmark's temporary directory");
        }
        let sample = Sample {
            at: started.elapsed().as_secs_f64(),
            cpu_seconds: cpu_seconds(child.id(), ticks)?,
            rss_mb: rss_mb(child.id())?,
            files: count_files(data),
        };
        let cpu = samples
            .last()
            .map_or(sample.cpu_seconds / sample.at, |p| (sample.cpu_seconds - p.cpu_seconds) / (sample.at - p.at));
        println!("{:>8.1} {:>12.1} {:>10.0} {:>8}", sample.at / 60.0, cpu * 100.0, sample.rss_mb, sample.files);
        samples.push(sample);
    }
    Ok(samples)
}

/// The figures after the warm-up, against the goals.
fn report(samples: &[Sample], warmup_seconds: f64) {
    let after: Vec<&Sample> = samples.iter().filter(|s| s.at >= warmup_seconds).collect();
    let (Some(first), Some(last)) = (after.first(), after.last()) else {
        println!("no sample after the warm-up");
        return;
    };
    let hours = (last.at - first.at) / 3_600.0;
    if hours <= 0.0 {
        println!("one sample after the warm-up: run longer for a drift");
        return;
    }
    let cpu = (last.cpu_seconds - first.cpu_seconds) / (last.at - first.at) * 100.0;
    let rss_per_hour = (last.rss_mb - first.rss_mb) / hours;
    let files_per_hour = (last.files as f64 - first.files as f64) / hours;
    let verdict = |met: bool| if met { "met" } else { "NOT met" };
    println!("after the warm-up ({:.1} min measured):", hours * 60.0);
    println!(
        "  CPU      {cpu:>8.1} % of one core   (goal ≤ {CPU_GOAL_PERCENT} %: {})",
        verdict(cpu <= CPU_GOAL_PERCENT)
    );
    println!(
        "  memory   {rss_per_hour:>+8.1} MB per hour    (goal ≤ +{RSS_GOAL_MB_PER_HOUR} MB: {}; {:.0} → {:.0} MB)",
        verdict(rss_per_hour <= RSS_GOAL_MB_PER_HOUR),
        first.rss_mb,
        last.rss_mb
    );
    println!(
        "  files    {files_per_hour:>+8.0} per hour        ({} → {}; bounded when compaction and retention keep up)",
        first.files, last.files
    );
}

/// Asks `up` to stop (SIGTERM: it shuts down in order), then kills it if it has not within 60 s.
fn stop(child: &mut Child) {
    if let Ok(pid) = libc::pid_t::try_from(child.id()) {
        // SAFETY: kill(2) on our own child's pid with a valid signal number has no memory effects.
        unsafe {
            libc::kill(pid, libc::SIGTERM);
        }
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if matches!(child.try_wait(), Ok(Some(_))) {
            return;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// The kernel's clock ticks per second (the unit of /proc/<pid>/stat's CPU times).
fn clock_ticks_per_second() -> f64 {
    // SAFETY: sysconf reads a constant of the system.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 { ticks as f64 } else { 100.0 }
}

/// CPU seconds (user + system, all threads) the process `pid` has used.
fn cpu_seconds(pid: u32, ticks: f64) -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).context("reading /proc/<pid>/stat")?;
    // The command name (field 2) may hold spaces: count fields after its closing parenthesis.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).context("/proc/<pid>/stat without a command name")?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // Fields 14 and 15 (utime, stime) are the 12th and 13th after the name.
    let ticks_used: f64 = [11, 12]
        .iter()
        .map(|i| fields.get(*i).and_then(|f| f.parse::<f64>().ok()).context("/proc/<pid>/stat utime/stime"))
        .sum::<anyhow::Result<f64>>()?;
    Ok(ticks_used / ticks)
}

/// Resident memory of `pid`, MB.
fn rss_mb(pid: u32) -> anyhow::Result<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).context("reading /proc/<pid>/status")?;
    let kb = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse::<f64>().ok())
        .context("/proc/<pid>/status has no VmRSS")?;
    Ok(kb / 1024.0)
}

/// Files under `dir`, recursively (0 when it does not exist yet).
fn count_files(dir: &Path) -> u64 {
    let mut count = 0;
    let mut pending: Vec<PathBuf> = vec![dir.to_path_buf()];
    while let Some(next) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&next) else { continue };
        for entry in entries.flatten() {
            match entry.file_type() {
                Ok(t) if t.is_dir() => pending.push(entry.path()),
                Ok(_) => count += 1,
                Err(_) => {}
            }
        }
    }
    count
}
