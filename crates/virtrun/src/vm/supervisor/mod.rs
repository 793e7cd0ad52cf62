//! Runs QEMU and pumps the channels: the binary's stdout and stderr to ours,
//! our stdin to the binary (framed and flow-controlled), events and the
//! kernel log into a [`Report`] of how the run ended.
//!
//! Every channel is one end of a socket pair whose other end QEMU inherits as
//! a `socket` chardev (`fd=N`): no paths, no ports, nothing that two runs at
//! once could share. The exception are virtio *console* ports (standalone
//! mode): QEMU drops what a console writes when the host end would block, so
//! those write to an unlinked temporary file QEMU inherits (`file` chardev on
//! `/dev/fd/N`), which never blocks, and which virtrun reads as it grows.

mod control;
mod fds;
mod files;
mod handover;
mod kernel_log;
mod signals;
mod streams;
use control::*;
use fds::*;
pub use fds::{archive_path, channel_fds, run_disk_path};
use files::*;
use handover::*;
use kernel_log::*;
pub use signals::catch_signals;
use signals::*;
use streams::*;

use crate::pack::gotest::{FIRST_FILE_PORT, Output};
use crate::trace::Trace;
use crate::vm::port::PortReader;
use crate::vm::qemu::{self, Channel, Invocation};
use crate::vm::qmp::Qmp;
use crate::vm::snapshot::{self, Pending};
use signal_hook::iterator::Signals;
use std::ffi::OsString;
use std::io::{self, Read};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};
use virtrun_protocol::Role;

/// What the guest said and did, collected from all channels.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Report {
    /// The exit code the guest reported, if it did.
    pub exit_code: Option<i32>,
    /// The signal that killed the binary.
    pub signaled: Option<i32>,
    /// The guest ran out of memory (event or kernel log).
    pub oom: bool,
    /// The kernel's panic line.
    pub panic: Option<String>,
    /// Errors the init reported (the first [`MAX_ERRORS`]).
    pub init_errors: Vec<String>,
    /// How QEMU ended; None if it could not be waited for.
    pub qemu_status: Option<ExitStatus>,
    /// What QEMU printed on its stderr.
    pub qemu_stderr: String,
    /// The binary had started (its init said so) when the run ended.
    pub started: bool,
    /// The run was stopped after this long.
    pub timed_out: Option<Duration>,
    /// virtrun stopped the guest because it got this signal.
    pub interrupted: Option<i32>,
    /// The guest showed a sign of life (a kernel log line or an event).
    pub alive: bool,
    /// Files the guest sent that could not be written on the host (the
    /// first [`MAX_ERRORS`]).
    pub host_errors: Vec<String>,
    /// The init's last words before it powered off without an exit code
    /// ([`virtrun_protocol::INIT_FATAL_PREFIX`] on the kernel log).
    pub fatal: Option<String>,
    /// The kernel could not unpack the initramfs (its reason): the init
    /// then misses files.
    pub unpack_failed: Option<String>,
    /// The guest broke the protocol (an event line without end); the run
    /// was stopped.
    pub protocol_error: Option<String>,
    /// KVM was used and failed before the guest showed a sign of life: the
    /// run should be repeated under emulation.
    pub kvm_failure: Option<String>,
    /// The guest took the host's entropy and clock ([`Event::Resumed`](virtrun_protocol::Event::Resumed)):
    /// from here on the run is handed over, and a failure is its own.
    pub resumed: bool,
    /// Restoring the snapshot failed before the guest resumed: nothing of
    /// the run was handed over, a cold boot may take its place.
    pub restore_failure: Option<String>,
    /// The guest reached its save point ([`Event::Parked`](virtrun_protocol::Event::Parked)).
    pub parked: bool,
    /// The guest was saved when it parked ([`Start::Save`]) and QEMU
    /// stopped: the run goes on from the snapshot.
    pub saved: bool,
}

/// Where the guest comes from.
#[derive(Debug)]
pub enum Start<'a> {
    /// Booted from an initramfs that holds the whole run.
    Cold,
    /// As [`Start::Cold`], the guest held until the gdb attached through
    /// the listening socket lets it run (`-gdb`); deadlines start then.
    Gdb(&'a std::net::TcpListener),
    /// Booted from an initramfs that holds the boot part, its memory the
    /// snapshot's file; saved to `snapshot` once parked, and QEMU stops
    /// ([`Report::saved`]: a restore of the snapshot runs the run). When
    /// no snapshot is made, or saving fails, it is given `payload`, the
    /// run, instead.
    Save {
        /// Where the snapshot goes; none when it cannot be made (the run
        /// goes on all the same).
        snapshot: Option<Pending>,
        /// The run: a cpio archive (the run disk's file, with
        /// [`Invocation::run_disk`]).
        payload: &'a std::fs::File,
        /// The archive's length.
        payload_len: u64,
    },
    /// Restored from `snapshot`, then given `payload`, the run.
    Restore {
        /// The snapshot, opened read-only.
        snapshot: &'a std::fs::File,
        /// As for [`Start::Save`].
        payload: &'a std::fs::File,
        /// As for [`Start::Save`].
        payload_len: u64,
    },
}

/// How long a restored guest may take to answer: restores take a tenth of
/// a second; one that takes this long is broken, and a cold boot does
/// better.
const RESTORE_DEADLINE: Duration = Duration::from_secs(10);

/// How long QEMU may take to save a parked guest.
const SAVE_DEADLINE: Duration = Duration::from_secs(60);

/// Most errors of one kind a report keeps: a guest that floods errors
/// cannot make virtrun's memory grow, and the first one is what is shown.
pub const MAX_ERRORS: usize = 16;

/// Adds `error` to `errors` unless it holds [`MAX_ERRORS`] already.
fn keep_error(errors: &mut Vec<String>, error: String) {
    if errors.len() < MAX_ERRORS {
        errors.push(error);
    }
}

/// Most bytes of QEMU's stderr kept for the report.
const MAX_QEMU_STDERR: usize = 64 * 1024;

/// Longest kernel log line handled as one: a longer one (a binary that
/// writes to the console without a newline) is handled in pieces.
const MAX_LOG_LINE: usize = 64 * 1024;

/// Why QEMU could not be run at all.
#[derive(Debug, thiserror::Error)]
pub enum SuperviseError {
    /// Spawning failed.
    #[error("cannot start {bin}: {reason}")]
    Spawn {
        /// The emulator.
        bin: String,
        /// Why.
        reason: io::Error,
    },
    /// Setting up channels failed.
    #[error("cannot create channels: {0}")]
    Channels(io::Error),
}

/// Stdin flow control shared by the control reader and the stdin pump.
#[derive(Debug, Default)]
struct Flow {
    ready: bool,
    done: bool,
    in_flight: usize,
}

type Shared = Arc<(Mutex<Flow>, Condvar)>;

/// How long QEMU may take to greet on QMP under -gdb.
const GDB_QMP_DEADLINE: Duration = Duration::from_secs(10);

/// How often the supervisor looks at signals and the deadline.
const TICK: Duration = Duration::from_millis(20);

/// Runs the guest to the end (or to `timeout`) and reports what happened.
/// The first SIGINT/SIGTERM/SIGHUP goes to the binary; a second one, or one
/// before the guest can take it, stops QEMU at once.
pub fn run(
    inv: &Invocation,
    archive: &std::fs::File,
    start: Start<'_>,
    outputs: &[Output],
    timeout: Option<Duration>,
    signals: &mut Signals,
    trace: &Trace,
) -> Result<Report, SuperviseError> {
    let qemu_gone = Arc::new(AtomicBool::new(false));
    let channels = inv.channels();
    let (host_ends, mut qemu_ends) = open_channels(inv, &channels, &qemu_gone)?;
    let next_fd = add_run_disk(inv, &start, channels.len(), &mut qemu_ends)?;
    let (qmp, extra_args) = start_fds(inv, &start, next_fd, &mut qemu_ends)?;
    let mut child = spawn_qemu(inv, archive, qemu_ends, channels.len(), &extra_args, trace)?;
    let state = State {
        qemu_pid: child.id() as libc::pid_t,
        ..State::default()
    };
    let qemu_stderr = child
        .stderr
        .take()
        .map(|s| read_qemu_stderr(s, Arc::clone(&state.report)));
    let restoring = matches!(start, Start::Restore { .. });
    let qmp = if restoring {
        restore(qmp, next_fd, &mut child, &state, trace)
    } else {
        qmp
    };
    let released = Arc::new(OnceLock::new());
    let (qmp, held) = match (&start, qmp) {
        (Start::Gdb(_), Some(stream)) => {
            wait_for_gdb(stream, Arc::clone(&released), trace);
            (None, true)
        }
        (_, qmp) => (qmp, false),
    };
    let handover = Arc::new(Handover::new(
        start,
        qmp,
        migration(next_fd + 2),
        state.qemu_pid,
        inv.run_disk.is_some(),
        trace,
    )?);
    let (readers, control) =
        start_readers(inv, &channels, host_ends, outputs, &state, &handover, trace)?;
    // A restored guest is parked already: the run goes into the channel
    // at once, to be read as soon as the guest runs.
    if restoring && let Some(control) = &control {
        handover.go_on(control).map_err(SuperviseError::Channels)?;
    }
    let watch = Watch {
        kvm: inv.kvm,
        restoring,
        held: held.then_some(released),
        timeout,
        control,
        state: &state,
        trace,
    };
    let status = watch.until_exit(child, signals);
    trace.log(|| format!("QEMU exited: {status:?}"));
    qemu_gone.store(true, Ordering::SeqCst);
    for r in readers {
        let _ = r.join();
    }
    {
        let (flow, cv) = &*state.flow;
        lock(flow).done = true;
        cv.notify_all();
    }
    let qemu_stderr = qemu_stderr.and_then(|h| h.join().ok()).unwrap_or_default();
    let mut report = lock(&state.report).clone();
    report.qemu_status = status;
    report.qemu_stderr = qemu_stderr;
    Ok(settle(report, inv.kvm, restoring))
}

/// The migration URI of the file QEMU has as `fd`.
fn migration(fd: i32) -> String {
    format!("file:/dev/fd/{fd}")
}

/// After the channels: the run disk's file (see [`run_disk_path`]), when
/// the guest has one. Returns the next free fd in QEMU.
fn add_run_disk(
    inv: &Invocation,
    start: &Start<'_>,
    channels: usize,
    qemu_ends: &mut Vec<OwnedFd>,
) -> Result<i32, SuperviseError> {
    let next_fd = FIRST_CHANNEL_FD + channels as i32;
    if inv.run_disk.is_none() {
        return Ok(next_fd);
    }
    match start {
        Start::Save { payload, .. } | Start::Restore { payload, .. } => {
            qemu_ends.push(clone_fd(payload)?);
            Ok(next_fd + 1)
        }
        Start::Cold | Start::Gdb(_) => Err(SuperviseError::Channels(io::Error::other(
            "a run disk without a run",
        ))),
    }
}

/// The fds and QEMU arguments of how the guest starts, from `next_fd` on,
/// and our end of QMP when the start needs it. A guest that is saved has
/// QMP on the next fd, its memory on the fd after that (the snapshot to
/// be) and saves its device state to the third; a restored one has the
/// snapshot on the next fd and QMP after it; under -gdb, the gdb server's
/// socket and then QMP.
fn start_fds(
    inv: &Invocation,
    start: &Start<'_>,
    next_fd: i32,
    qemu_ends: &mut Vec<OwnedFd>,
) -> Result<(Option<UnixStream>, Vec<OsString>), SuperviseError> {
    Ok(match start {
        Start::Cold | Start::Save { snapshot: None, .. } => (None, Vec::new()),
        Start::Gdb(listener) => {
            // QEMU's gdb server on our listening socket (bound to the
            // loopback by virtrun, so a port in use is our error, and
            // never another interface); QMP tells when gdb lets the guest
            // run.
            let listener = listener.try_clone().map_err(SuperviseError::Channels)?;
            qemu_ends.push(listener.into());
            let host = qmp_pair(qemu_ends)?;
            let mut args = qemu::gdb_args(next_fd);
            args.extend(qemu::qmp_args(next_fd + 1));
            (Some(host), args)
        }
        Start::Save {
            snapshot: Some(snapshot),
            ..
        } => {
            let host = qmp_pair(qemu_ends)?;
            qemu_ends.push(clone_fd(snapshot.file())?);
            qemu_ends.push(clone_fd(snapshot.state())?);
            let mut args = qemu::qmp_args(next_fd);
            args.extend(snapshot::memory_args(next_fd + 1, inv.memory_mb, false));
            (Some(host), args)
        }
        Start::Restore { snapshot, .. } => {
            qemu_ends.push(clone_fd(snapshot)?);
            let host = qmp_pair(qemu_ends)?;
            let mut args = snapshot::memory_args(next_fd, inv.memory_mb, true);
            args.extend(qemu::qmp_args(next_fd + 1));
            args.extend(["-incoming".into(), "defer".into()]);
            (Some(host), args)
        }
    })
}

/// A socket pair for QMP: QEMU's end joins its fds, ours is returned.
fn qmp_pair(qemu_ends: &mut Vec<OwnedFd>) -> Result<UnixStream, SuperviseError> {
    let (host, qemu) = UnixStream::pair().map_err(SuperviseError::Channels)?;
    qemu_ends.push(qemu.into());
    Ok(host)
}

/// QEMU loads the device state from the snapshot (the file at `fd`), after
/// the hole before its memory, and the guest runs; QMP is done with then.
/// A failure is the report's and ends QEMU.
fn restore(
    qmp: Option<UnixStream>,
    fd: i32,
    child: &mut Child,
    state: &State,
    trace: &Trace,
) -> Option<UnixStream> {
    let stream = qmp?;
    let restored = Qmp::connect(stream, Instant::now() + RESTORE_DEADLINE)
        .and_then(|mut qmp| qmp.restore(&migration(fd)));
    if let Err(e) = restored {
        trace.log(|| format!("restoring: {e}"));
        lock(&state.report).restore_failure = Some(format!("restoring: {e}"));
        let _ = child.kill();
    }
    None
}

/// Under -gdb, deadlines count from when gdb lets the guest run (QEMU's
/// RESUME event), which sets `released`.
fn wait_for_gdb(stream: UnixStream, released: Arc<OnceLock<Instant>>, trace: &Trace) {
    let trace = trace.clone();
    thread::spawn(move || {
        let resumed = Qmp::connect(stream, Instant::now() + GDB_QMP_DEADLINE)
            .and_then(|mut qmp| qmp.wait_for_event("RESUME"));
        trace.log(|| format!("gdb let the guest run: {resumed:?}"));
        let _ = released.set(Instant::now());
    });
}

/// The report's last word on KVM and restoring, once QEMU ended.
fn settle(mut report: Report, kvm: bool, restoring: bool) -> Report {
    // A KVM failure only counts before the guest showed life; afterwards the
    // run is the guest's own.
    if !kvm || report.alive || report.interrupted.is_some() || report.timed_out.is_some() {
        report.kvm_failure = None;
    }
    // A run stopped by the user or its deadline is not repeated cold.
    if report.resumed || report.interrupted.is_some() || report.timed_out.is_some() {
        report.restore_failure = None;
    } else if restoring && report.restore_failure.is_none() {
        report.restore_failure = Some(match report.qemu_status {
            Some(status) if !status.success() => format!("QEMU ended: {status}"),
            _ => "the restored guest did not resume".into(),
        });
    }
    if let Some(why) = &mut report.restore_failure
        && let Some(line) = report.qemu_stderr.lines().next()
    {
        why.push_str(&format!(" (QEMU: {line})"));
    }
    report
}

/// What the supervisor's threads share.
#[derive(Default)]
struct State {
    qemu_pid: libc::pid_t,
    flow: Shared,
    received: Received,
    report: Arc<Mutex<Report>>,
}

/// Starts QEMU with the archive at [`ARCHIVE_FD`] and the channels' ends
/// from [`FIRST_CHANNEL_FD`] on, in its own process group, dying with
/// virtrun.
fn spawn_qemu(
    inv: &Invocation,
    archive: &std::fs::File,
    qemu_ends: Vec<OwnedFd>,
    channels: usize,
    extra_args: &[OsString],
    trace: &Trace,
) -> Result<Child, SuperviseError> {
    let mut args = inv.args(&channel_fds(channels));
    args.extend_from_slice(extra_args);
    trace.log(|| {
        let line: Vec<String> = std::iter::once(inv.qemu_bin.as_os_str().to_os_string())
            .chain(args.iter().cloned())
            .map(|a: OsString| a.to_string_lossy().into_owned())
            .collect();
        format!("QEMU command line: {}", line.join(" "))
    });
    let mut cmd = Command::new(&inv.qemu_bin);
    cmd.args(&args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        // Its own process group: a terminal's Ctrl-C reaches virtrun only,
        // which forwards it to the binary instead of QEMU dying of it.
        .process_group(0);
    let raw: Vec<i32> = std::iter::once(archive.as_raw_fd())
        .chain(qemu_ends.iter().map(AsRawFd::as_raw_fd))
        .collect();
    // SAFETY: the closure only calls fcntl(2), dup2(2) and prctl(2), which
    // are async-signal-safe, and touches no memory but the captured Vec,
    // which is read-only here.
    unsafe {
        cmd.pre_exec(move || {
            place_fds(&raw)?;
            // QEMU must not outlive virtrun, however virtrun ends.
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) < 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = cmd.spawn().map_err(|reason| SuperviseError::Spawn {
        bin: inv.qemu_bin.display().to_string(),
        reason,
    })?;
    drop(qemu_ends);
    trace.log(|| "QEMU started".into());
    Ok(child)
}

/// Starts a thread per channel that reads (and for the control channel
/// also writes) it; returns them and the control channel's writer.
fn start_readers(
    inv: &Invocation,
    channels: &[Channel],
    host_ends: Vec<HostEnd>,
    outputs: &[Output],
    state: &State,
    handover: &Arc<Handover>,
    trace: &Trace,
) -> Result<(Vec<JoinHandle<()>>, Option<ControlWriter>), SuperviseError> {
    let mut readers = Vec::new();
    let mut control = None;
    for (channel, stream) in channels.iter().zip(host_ends) {
        let report = Arc::clone(&state.report);
        let verbose = inv.verbose;
        let handle = match *channel {
            Channel::Role(Role::Log) => {
                thread::spawn(move || read_log(stream, verbose, false, &report))
            }
            Channel::Port(0) | Channel::VirtioConsole0 => {
                thread::spawn(move || read_log(stream, verbose, true, &report))
            }
            Channel::Role(Role::Control) => {
                let HostEnd::Socket(stream) = stream else {
                    return Err(SuperviseError::Channels(io::Error::other(
                        "the control channel must be a socket",
                    )));
                };
                let writer = Arc::new(Mutex::new(
                    stream.try_clone().map_err(SuperviseError::Channels)?,
                ));
                control = Some(Arc::clone(&writer));
                let flow_in = Arc::clone(&state.flow);
                let writer_in = Arc::clone(&writer);
                thread::spawn(move || pump_stdin(&writer_in, &flow_in));
                let ctx = ControlContext {
                    stop_when_finished: (!inv.host_share).then_some(state.qemu_pid),
                    flow: Arc::clone(&state.flow),
                    report,
                    outputs: outputs.to_vec(),
                    received: Arc::clone(&state.received),
                    writer,
                    handover: Arc::clone(handover),
                    trace: trace.clone(),
                };
                thread::spawn(move || read_control(stream, &ctx))
            }
            Channel::Role(Role::Stdout) | Channel::Port(1) => {
                let to = output(io::stdout().as_fd());
                let count = Arc::clone(&state.received);
                let from: Box<dyn Read + Send> = match channel {
                    Channel::Port(_) => Box::new(PortReader::new(stream, inv.port_encoding)),
                    _ => Box::new(stream),
                };
                thread::spawn(move || copy_out(from, to, &count[0]))
            }
            Channel::Role(Role::Stderr) => {
                let to = output(io::stderr().as_fd());
                let count = Arc::clone(&state.received);
                thread::spawn(move || copy_out(stream, to, &count[1]))
            }
            Channel::Port(n) => {
                let host = n
                    .checked_sub(FIRST_FILE_PORT)
                    .and_then(|i| outputs.get(i))
                    .map(|o| o.host.clone());
                let encoding = inv.port_encoding;
                thread::spawn(move || {
                    if let Err(e) =
                        copy_port_to_file(PortReader::new(stream, encoding), host.as_deref())
                    {
                        keep_error(&mut lock(&report).host_errors, e);
                    }
                })
            }
        };
        readers.push(handle);
    }
    Ok((readers, control))
}

/// Locks `m`, poisoned or not: a thread that panicked holding it left
/// plain data (a report, counters, a socket) that is still the best there
/// is, and the run must end cleanly either way.
pub(super) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufReader, Write};

    fn lines(input: &[u8], max: usize) -> Vec<(Vec<u8>, LineEnd)> {
        let mut reader = BufReader::with_capacity(3, input);
        let mut line = Vec::new();
        let mut out = Vec::new();
        loop {
            let end = read_line_capped(&mut reader, &mut line, max).unwrap();
            if end == LineEnd::Eof {
                return out;
            }
            out.push((line.clone(), end));
        }
    }

    #[test]
    fn lines_are_capped() {
        assert_eq!(
            lines(b"ab\ncdefgh\nij", 4),
            vec![
                (b"ab\n".to_vec(), LineEnd::Line),
                (b"cdef".to_vec(), LineEnd::Full),
                (b"gh\n".to_vec(), LineEnd::Line),
                (b"ij".to_vec(), LineEnd::Line),
            ]
        );
        assert_eq!(lines(b"", 4), vec![]);
        assert_eq!(lines(b"abc\n", 4), vec![(b"abc\n".to_vec(), LineEnd::Line)]);
    }

    fn outputs() -> Vec<Output> {
        vec![
            Output {
                guest: "/tmp/virtrun-out/0".into(),
                host: "/home/u/cover.out".into(),
                dir: false,
            },
            Output {
                guest: "/tmp/virtrun-out/covdata".into(),
                host: "/home/u/covdata".into(),
                dir: true,
            },
        ]
    }

    #[test]
    fn the_guest_names_no_host_path() {
        let o = outputs();
        assert_eq!(
            output_target(&o, 0, ""),
            Ok(Target::Named("/home/u/cover.out".into()))
        );
        assert_eq!(
            output_target(&o, 1, "covcounters.1"),
            Ok(Target::InDir("/home/u/covdata/covcounters.1".into()))
        );
        for bad in ["", ".", "..", "../x", "/etc/passwd", "a/b", "a\0b"] {
            assert!(output_target(&o, 1, bad).is_err(), "{bad:?}");
        }
        assert!(output_target(&o, 0, "x").is_err());
        assert!(output_target(&o, 2, "").is_err());
        assert!(output_target(&o, 1, &"x".repeat(256)).is_err());
    }

    #[test]
    fn a_planted_symlink_is_replaced_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        std::fs::write(&victim, b"precious").unwrap();
        let out = dir.path().join("out");
        std::fs::create_dir(&out).unwrap();
        std::os::unix::fs::symlink(&victim, out.join("covcounters")).unwrap();
        std::fs::hard_link(&victim, out.join("hardlink")).unwrap();
        for name in ["covcounters", "hardlink"] {
            let target = Target::InDir(out.join(name));
            receive_file(&mut &b"guest data"[..], 10, Some(&target), FILE_STALL).unwrap();
            assert_eq!(std::fs::read(out.join(name)).unwrap(), b"guest data");
        }
        assert_eq!(std::fs::read(&victim).unwrap(), b"precious");
        assert!(!out.join("covcounters").is_symlink());
    }

    #[test]
    fn a_short_file_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let target = Target::Named(dir.path().join("f"));
        let err = receive_file(&mut &b"abc"[..], 1 << 40, Some(&target), FILE_STALL).unwrap_err();
        assert!(
            err.to_string().contains("got 3 of 1099511627776 bytes"),
            "{err}"
        );
    }

    #[test]
    fn a_file_that_stops_arriving_is_an_error() {
        let (mut host, mut guest) = UnixStream::pair().unwrap();
        host.set_read_timeout(Some(Duration::from_millis(10)))
            .unwrap();
        guest.write_all(b"abc").unwrap();
        let start = Instant::now();
        let err = receive_file(&mut host, 1 << 40, None, Duration::from_millis(100)).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert!(
            err.to_string().contains("after 3 of 1099511627776 bytes"),
            "{err}"
        );
        assert!(start.elapsed() < Duration::from_secs(5));
    }
}
