//! `-kernels`: the binary under several kernels, in parallel up to the
//! host's cores, each run a virtrun process of its own (its own guest and
//! warm snapshot, signals, deadline and exit code) that this one starts
//! with the same arguments and tells its kernel through the environment.
//!
//! The first kernel's run has virtrun's streams (stdin included) and serves
//! go test's file flags; the others read an empty stdin, their output is
//! kept and written after the first's, in list order, each introduced by a
//! header line on stderr, and what their guests send back of go test's
//! files is dropped. A table on stderr ends the command: kernel, release,
//! exit code, seconds, warm or cold. Every kernel is resolved (files
//! checked, images pulled) before any guest boots.

use crate::config::{Config, KernelArg};
use crate::inspect::elf;
use crate::outcome::Outcome;
use crate::trace::{Trace, say};
use anyhow::{Context, Result, bail};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use std::fs::File;
use std::io::{Read, Seek, Write};
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Instant;

/// The kernel a run of a matrix takes (a file or directory).
const KERNEL_ENV: &str = "VIRTRUN_MATRIX_KERNEL";
/// The fd on which a run of a matrix says whether it ran warm: an unnamed
/// file of the matrix, so that nothing is left however it ends.
const REPORT_ENV: &str = "VIRTRUN_MATRIX_REPORT";

/// That fd's number in the run.
const REPORT_FD: i32 = 3;
/// Set for the runs after the first: their go test files are dropped.
const SECONDARY_ENV: &str = "VIRTRUN_MATRIX_SECONDARY";

/// The variables of this protocol, which no guest is given.
pub const ENV: [&str; 3] = [KERNEL_ENV, REPORT_ENV, SECONDARY_ENV];

/// When this process is a run of a matrix: its kernel, in place of the
/// list. `None` for a process of its own.
pub fn member_kernel() -> Option<KernelArg> {
    let path = PathBuf::from(std::env::var_os(KERNEL_ENV)?);
    Some(if path.is_dir() {
        KernelArg::Dir(path)
    } else {
        KernelArg::File(path)
    })
}

/// Whether this run's go test files are to be dropped.
pub fn secondary() -> bool {
    std::env::var_os(SECONDARY_ENV).is_some()
}

/// Tells the matrix whether this run ran warm.
pub fn report(warm: bool) {
    if let Some(fd) = std::env::var(REPORT_ENV)
        .ok()
        .and_then(|v| v.parse::<i32>().ok())
    {
        let _ = std::fs::write(
            format!("/proc/self/fd/{fd}"),
            if warm { "warm" } else { "cold" },
        );
    }
}

/// One kernel of the list, resolved.
struct Kernel {
    /// As given, for the header and the table.
    shown: String,
    /// The file or directory its run takes.
    path: PathBuf,
    release: String,
}

/// One run under way or done.
struct Run {
    kernel: Kernel,
    child: Option<Child>,
    /// The output of a run after the first, kept until its turn.
    kept: Option<(File, File)>,
    /// Where it says whether it ran warm.
    report: File,
    started: Option<Instant>,
    seconds: f64,
    code: Option<u8>,
}

/// Runs the binary under each of `config.kernels`.
pub fn run(config: &Config, trace: &Trace) -> Result<Outcome> {
    if config.tty {
        bail!("-tty: not with -kernels: one terminal cannot serve several guests");
    }
    if config.gdb.is_some() {
        bail!("-gdb: not with -kernels: give the one kernel to debug with -kernel");
    }
    let kernels = resolve(config, trace)?;
    let mut runs: Vec<Run> = kernels
        .into_iter()
        .map(|kernel| {
            Ok(Run {
                kernel,
                child: None,
                kept: None,
                report: crate::scratch::unnamed().context("-kernels: a run's report")?,
                started: None,
                seconds: 0.0,
                code: None,
            })
        })
        .collect::<Result<_>>()?;
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP])
        .context("catching signals")?;
    let parallel = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut next = 0;
    let mut shown = 0;
    while shown < runs.len() {
        while next < runs.len() && running(&runs) < parallel {
            start(&mut runs[next], next, trace)?;
            next += 1;
        }
        for sig in signals.pending() {
            for run in &runs {
                if let Some(child) = &run.child {
                    // SAFETY: kill(2) on a child not yet reaped.
                    unsafe { libc::kill(child.id() as libc::pid_t, sig) };
                }
            }
        }
        reap(&mut runs);
        // The first run's output was live; the others' follow in order.
        while shown < runs.len() && runs[shown].code.is_some() {
            if shown > 0 {
                replay(&mut runs[shown]);
            }
            shown += 1;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    table(&runs);
    let code = runs
        .iter()
        .filter_map(|r| r.code)
        .find(|&c| c != 0)
        .unwrap_or(0);
    Ok(Outcome {
        code,
        message: None,
    })
}

/// Each kernel of the list, checked and pulled, with its release: a kernel
/// that cannot be resolved ends the command before any guest boots.
fn resolve(config: &Config, trace: &Trace) -> Result<Vec<Kernel>> {
    let info = elf::inspect(&config.binary).context("binary")?;
    let arch = info.arch.with_context(|| {
        format!(
            "binary: {}: unsupported architecture {}",
            config.binary.display(),
            elf::machine_name(info.machine)
        )
    })?;
    config
        .kernels
        .iter()
        .map(|arg| {
            let (path, kernel) = super::resolve_kernel(arg, config, arch, trace)
                .with_context(|| format!("-kernels {arg}"))?;
            Ok(Kernel {
                shown: arg.to_string(),
                path,
                release: kernel.release.unwrap_or_else(|| "?".into()),
            })
        })
        .collect()
}

fn running(runs: &[Run]) -> usize {
    runs.iter().filter(|r| r.child.is_some()).count()
}

/// Starts run `i`: virtrun again, with this process's arguments, under its
/// kernel; the first with this process's streams, the others with an empty
/// stdin and their output kept. It dies with this process.
fn start(run: &mut Run, i: usize, trace: &Trace) -> Result<()> {
    let exe = std::env::current_exe().context("-kernels: virtrun's own path")?;
    let mut cmd = Command::new(exe);
    cmd.args(std::env::args_os().skip(1))
        .env(KERNEL_ENV, &run.kernel.path)
        .env(REPORT_ENV, REPORT_FD.to_string());
    let report = run.report.as_raw_fd();
    if i > 0 {
        let keep = || crate::scratch::unnamed().context("-kernels: keeping a run's output");
        let (out, err) = (keep()?, keep()?);
        cmd.env(SECONDARY_ENV, "1")
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(err.try_clone()?);
        run.kept = Some((out, err));
    }
    // SAFETY: prctl(2), dup2(2) and fcntl(2) only, between fork and exec,
    // on an fd this process owns.
    unsafe {
        cmd.pre_exec(move || {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            if report == REPORT_FD {
                libc::fcntl(REPORT_FD, libc::F_SETFD, 0);
            } else if libc::dup2(report, REPORT_FD) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    trace.log(|| format!("matrix: run {i} under {}", run.kernel.shown));
    run.started = Some(Instant::now());
    run.child = Some(cmd.spawn().context("-kernels: starting a run")?);
    Ok(())
}

/// Notes the runs that ended.
fn reap(runs: &mut [Run]) {
    for run in runs {
        let Some(child) = &mut run.child else {
            continue;
        };
        if let Ok(Some(status)) = child.try_wait() {
            use std::os::unix::process::ExitStatusExt;
            let code = status
                .code()
                .or_else(|| status.signal().map(|s| 128 + s))
                .unwrap_or(255);
            run.code = Some(u8::try_from(code).unwrap_or(255));
            run.seconds = run.started.map_or(0.0, |s| s.elapsed().as_secs_f64());
            run.child = None;
        }
    }
}

/// Writes a later run's kept output, after a header line naming it.
fn replay(run: &mut Run) {
    say(&format!(
        "virtrun: ---- kernel {} ({}) ----\n",
        run.kernel.shown, run.kernel.release
    ));
    let Some((out, err)) = run.kept.take() else {
        return;
    };
    copy(out, &mut std::io::stdout().lock());
    copy(err, &mut std::io::stderr().lock());
}

fn copy(mut from: File, to: &mut impl Write) {
    if from.rewind().is_ok() {
        let mut buf = Vec::new();
        let _ = from.read_to_end(&mut buf);
        let _ = to.write_all(&buf);
        let _ = to.flush();
    }
}

/// The table of the runs.
fn table(runs: &[Run]) {
    let header = ["kernel", "release", "exit", "seconds", "guest"];
    let rows: Vec<[String; 5]> = runs
        .iter()
        .map(|r| {
            [
                r.kernel.shown.clone(),
                r.kernel.release.clone(),
                r.code.map_or("?".into(), |c| c.to_string()),
                format!("{:.1}", r.seconds),
                guest(&r.report),
            ]
        })
        .collect();
    let width = |c: usize| {
        rows.iter()
            .map(|r| r[c].len())
            .chain([header[c].len()])
            .max()
            .unwrap_or(0)
    };
    let widths: Vec<usize> = (0..5).map(width).collect();
    let line = |cells: [&str; 5]| {
        format!(
            "virtrun: {:<w0$}  {:<w1$}  {:>w2$}  {:>w3$}  {}\n",
            cells[0],
            cells[1],
            cells[2],
            cells[3],
            cells[4],
            w0 = widths[0],
            w1 = widths[1],
            w2 = widths[2],
            w3 = widths[3],
        )
    };
    let mut text = line(header);
    for r in &rows {
        text.push_str(&line([&r[0], &r[1], &r[2], &r[3], &r[4]]));
    }
    say(&text);
}

/// Warm or cold, as the run reported.
fn guest(report: &File) -> String {
    let mut text = String::new();
    let mut report = report;
    let _ = report
        .rewind()
        .and_then(|()| report.read_to_string(&mut text));
    if text.is_empty() { "?".into() } else { text }
}
