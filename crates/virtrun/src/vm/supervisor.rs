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

use crate::pack::gotest::{FIRST_FILE_PORT, Output};
use crate::trace::Trace;
use crate::vm::port::PortReader;
use crate::vm::qemu::{Channel, Invocation};
use crate::vm::qmp::Qmp;
use crate::vm::snapshot::{self, Pending};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM, SIGWINCH};
use signal_hook::iterator::Signals;
use std::ffi::OsString;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, ChildStderr, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};
use virtrun_protocol::{
    Event, Frame, INIT_FATAL_PREFIX, INIT_LOG_PREFIX, MAX_EVENT_LINE, MAX_STDIN_FRAME, Resume,
    Role, STDIN_WINDOW, standalone_exit_code,
};

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
    /// The guest broke the protocol (an event line without end); the run
    /// was stopped.
    pub protocol_error: Option<String>,
    /// KVM was used and failed before the guest showed a sign of life: the
    /// run should be repeated under emulation.
    pub kvm_failure: Option<String>,
    /// The guest took the host's entropy and clock ([`Event::Resumed`]):
    /// from here on the run is handed over, and a failure is its own.
    pub resumed: bool,
    /// Restoring the snapshot failed before the guest resumed: nothing of
    /// the run was handed over, a cold boot may take its place.
    pub restore_failure: Option<String>,
    /// The guest reached its save point ([`Event::Parked`]).
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

/// The fd QEMU reads the initramfs from (`-initrd /dev/fd/3`): the archive
/// is an unnamed file that only virtrun and QEMU hold.
const ARCHIVE_FD: i32 = 3;

/// First fd QEMU sees its channel ends at.
const FIRST_CHANNEL_FD: i32 = ARCHIVE_FD + 1;

/// The path QEMU opens the initramfs at: the archive handed to [`run`].
pub fn archive_path() -> std::path::PathBuf {
    format!("/dev/fd/{ARCHIVE_FD}").into()
}

/// Where QEMU finds the run disk's file of a guest with `channels`
/// channels: the fd after theirs.
pub fn run_disk_path(channels: usize) -> std::path::PathBuf {
    format!("/dev/fd/{}", FIRST_CHANNEL_FD + channels as i32).into()
}

/// The fds QEMU sees the ends of `channels` channels at.
pub fn channel_fds(channels: usize) -> Vec<i32> {
    (0..channels as i32).map(|i| FIRST_CHANNEL_FD + i).collect()
}

/// Signals virtrun passes on to the binary. Register them with
/// [`catch_signals`] before anything that must be cleaned up exists.
const FORWARDED: [i32; 3] = [SIGINT, SIGTERM, SIGHUP];

/// Catches the forwarded signals from now on, so that none of them kills
/// virtrun before its temporary files are gone.
/// With `tty`, also `SIGWINCH`: a new size for the binary's terminal.
pub fn catch_signals(tty: bool) -> io::Result<Signals> {
    let signals = Signals::new(FORWARDED)?;
    if tty {
        signals.add_signal(SIGWINCH)?;
    }
    Ok(signals)
}

/// How long a guest under KVM may stay silent before KVM is taken to be
/// broken. A working KVM reaches the init in about a second; a broken one
/// (present, opens, but the guest crawls or dies with "KVM internal error"
/// while QEMU keeps running) would otherwise hang forever.
const KVM_WATCHDOG: Duration = Duration::from_secs(5);

/// What QEMU prints when KVM cannot run the guest (compared in lower case;
/// any error naming KVM counts too).
const KVM_ERRORS: [&str; 4] = [
    "kvm",
    "emulation failure",
    "failed to set msr",
    "failed to get msr",
];

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
    // After the channels: the run disk's file (see [`run_disk_path`]). A
    // guest that is saved has QMP on the next fd, its memory on the fd
    // after that (the snapshot to be) and saves its device state to the
    // third; a restored one has the snapshot on the next fd and QMP after
    // it.
    let mut next_fd = FIRST_CHANNEL_FD + channels.len() as i32;
    if inv.run_disk.is_some() {
        match &start {
            Start::Save { payload, .. } | Start::Restore { payload, .. } => {
                qemu_ends.push(clone_fd(payload)?);
                next_fd += 1;
            }
            Start::Cold | Start::Gdb(_) => {
                return Err(SuperviseError::Channels(io::Error::other(
                    "a run disk without a run",
                )));
            }
        }
    }
    let migration = |fd: i32| format!("file:/dev/fd/{fd}");
    let qmp_args = |fd: i32| {
        [
            "-chardev".to_string(),
            format!("socket,id=vrqmp,fd={fd}"),
            "-mon".into(),
            "chardev=vrqmp,mode=control".into(),
        ]
        .map(OsString::from)
        .to_vec()
    };
    let (qmp, extra_args) = match &start {
        Start::Cold => (None, Vec::new()),
        Start::Gdb(listener) => {
            // QEMU's gdb server on our listening socket (bound to the
            // loopback by virtrun, so a port in use is our error, and
            // never another interface); QMP tells when gdb lets the guest
            // run.
            qemu_ends.push(
                listener
                    .try_clone()
                    .map_err(SuperviseError::Channels)?
                    .into(),
            );
            let (host, qemu) = UnixStream::pair().map_err(SuperviseError::Channels)?;
            qemu_ends.push(qemu.into());
            let args = [
                "-chardev".to_string(),
                format!("socket,id=vrgdb,fd={next_fd},server=on,wait=off"),
                "-gdb".into(),
                "chardev:vrgdb".into(),
                "-S".into(),
                "-chardev".into(),
                format!("socket,id=vrqmp,fd={}", next_fd + 1),
                "-mon".into(),
                "chardev=vrqmp,mode=control".into(),
            ];
            (Some(host), args.map(OsString::from).to_vec())
        }
        Start::Save { snapshot: None, .. } => (None, Vec::new()),
        Start::Save {
            snapshot: Some(snapshot),
            ..
        } => {
            let (host, qemu) = UnixStream::pair().map_err(SuperviseError::Channels)?;
            qemu_ends.push(qemu.into());
            qemu_ends.push(clone_fd(snapshot.file())?);
            qemu_ends.push(clone_fd(snapshot.state())?);
            let mut args = qmp_args(next_fd);
            args.extend(snapshot::memory_args(next_fd + 1, inv.memory_mb, false));
            (Some(host), args)
        }
        Start::Restore { snapshot, .. } => {
            qemu_ends.push(clone_fd(snapshot)?);
            let (host, qemu) = UnixStream::pair().map_err(SuperviseError::Channels)?;
            qemu_ends.push(qemu.into());
            let mut args = snapshot::memory_args(next_fd, inv.memory_mb, true);
            args.extend(qmp_args(next_fd + 1));
            args.extend(["-incoming".into(), "defer".into()]);
            (Some(host), args)
        }
    };
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
    let qmp = match (restoring, qmp) {
        // QEMU loads the device state from the snapshot, after the hole
        // before its memory, and the guest runs.
        (true, Some(stream)) => {
            let restored = Qmp::connect(stream, Instant::now() + RESTORE_DEADLINE)
                .and_then(|mut qmp| qmp.restore(&migration(next_fd)));
            if let Err(e) = restored {
                trace.log(|| format!("restoring: {e}"));
                lock(&state.report).restore_failure = Some(format!("restoring: {e}"));
                let _ = child.kill();
            }
            None
        }
        (_, qmp) => qmp,
    };
    // Deadlines count from now, or under -gdb from when gdb lets the guest
    // run (QEMU's RESUME event).
    let released = Arc::new(OnceLock::new());
    let (qmp, held) = match (&start, qmp) {
        (Start::Gdb(_), Some(stream)) => {
            let released = Arc::clone(&released);
            let trace = trace.clone();
            thread::spawn(move || {
                let resumed = Qmp::connect(stream, Instant::now() + GDB_QMP_DEADLINE)
                    .and_then(|mut qmp| qmp.wait_for_event("RESUME"));
                trace.log(|| format!("gdb let the guest run: {resumed:?}"));
                let _ = released.set(Instant::now());
            });
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
        let (lock, cv) = &*state.flow;
        lock.lock().unwrap_or_else(|p| p.into_inner()).done = true;
        cv.notify_all();
    }
    let qemu_stderr = qemu_stderr.and_then(|h| h.join().ok()).unwrap_or_default();
    let mut report = lock(&state.report).clone();
    report.qemu_status = status;
    // A KVM failure only counts before the guest showed life; afterwards the
    // run is the guest's own.
    if !inv.kvm || report.alive || report.interrupted.is_some() || report.timed_out.is_some() {
        report.kvm_failure = None;
    }
    report.qemu_stderr = qemu_stderr;
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
    Ok(report)
}

fn clone_fd(file: &std::fs::File) -> Result<OwnedFd, SuperviseError> {
    Ok(file.try_clone().map_err(SuperviseError::Channels)?.into())
}

/// What is handed to the guest on the control channel before the run
/// starts: a snapshot taken when it parks (`Start::Save`), the host's
/// entropy and clock, the run's archive.
struct Handover {
    save: Mutex<Option<(UnixStream, Pending)>>,
    /// Where the device state is saved to.
    migration: String,
    /// QEMU, stopped once the guest is saved.
    qemu_pid: libc::pid_t,
    payload: Option<(std::fs::File, u64)>,
    /// The payload is on the run disk: only its length is sent.
    on_disk: bool,
    trace: Trace,
}

impl Handover {
    fn new(
        start: Start<'_>,
        qmp: Option<UnixStream>,
        migration: String,
        qemu_pid: libc::pid_t,
        on_disk: bool,
        trace: &Trace,
    ) -> Result<Handover, SuperviseError> {
        let clone = |f: &std::fs::File| f.try_clone().map_err(SuperviseError::Channels);
        let (save, payload) = match (start, qmp) {
            (
                Start::Save {
                    snapshot,
                    payload,
                    payload_len,
                },
                qmp,
            ) => (qmp.zip(snapshot), Some((clone(payload)?, payload_len))),
            (
                Start::Restore {
                    payload,
                    payload_len,
                    ..
                },
                _,
            ) => (None, Some((clone(payload)?, payload_len))),
            _ => (None, None),
        };
        Ok(Handover {
            save: Mutex::new(save),
            migration,
            qemu_pid,
            payload,
            on_disk,
            trace: trace.clone(),
        })
    }

    /// The guest parked: saves it when that is asked for, and then QEMU
    /// is stopped (returns true); otherwise, or when saving failed (which
    /// costs only the snapshot), lets it go on.
    fn parked(&self, control: &ControlWriter) -> io::Result<bool> {
        let save = self.save.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some((qmp, snapshot)) = save {
            let started = Instant::now();
            let mut qmp = Qmp::connect(qmp, Instant::now() + SAVE_DEADLINE);
            let saved = qmp
                .as_mut()
                .map_err(|e| io::Error::new(e.kind(), e.to_string()))
                .and_then(|qmp| qmp.save(&self.migration))
                .and_then(|()| snapshot.commit());
            match saved {
                Ok(path) => {
                    self.trace.log(|| {
                        format!(
                            "snapshot saved in {:.0?}: {}",
                            started.elapsed(),
                            path.display()
                        )
                    });
                    // The guest's memory is the snapshot now: it must not
                    // run on. SAFETY: kill(2) on QEMU, our child, not yet
                    // reaped (it is waited for only once it ended, and it
                    // is paused). No memory involved.
                    unsafe { libc::kill(self.qemu_pid, libc::SIGKILL) };
                    return Ok(true);
                }
                Err(e) => {
                    self.trace.log(|| format!("no snapshot saved: {e}"));
                    if let Ok(qmp) = &mut qmp {
                        qmp.cont()?;
                    }
                }
            }
        }
        self.go_on(control).map(|()| false)
    }

    /// Lets the guest go on: the host's entropy and clock, then the run,
    /// without waiting for the guest in between. The guest says
    /// [`Event::Resumed`] before it touches the run, so a restore that
    /// fails is still told apart from a run that failed. Sent from a thread
    /// of its own: the control reader must go on reading meanwhile.
    fn go_on(&self, control: &ControlWriter) -> io::Result<()> {
        let payload = match &self.payload {
            Some((file, len)) => Some((file.try_clone()?, *len)),
            None => None,
        };
        let on_disk = self.on_disk;
        let control = Arc::clone(control);
        let trace = self.trace.clone();
        thread::spawn(move || {
            let sent = resume(&control).and_then(|()| send_payload(&control, payload, on_disk));
            trace.log(|| format!("run handed over: {sent:?} bytes"));
        });
        Ok(())
    }
}

/// Tells the guest to go on as of now: the host's entropy and clock.
fn resume(control: &Mutex<UnixStream>) -> io::Result<()> {
    let mut seed = [0u8; 32];
    // SAFETY: getrandom(2) writes at most `seed.len()` bytes into `seed`.
    let n = unsafe { libc::getrandom(seed.as_mut_ptr().cast(), seed.len(), 0) };
    if n != seed.len() as isize {
        return Err(io::Error::other("no entropy from the host"));
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let frame = Frame::Resume(Resume {
        seed,
        secs: now.as_secs() as i64,
        nanos: now.subsec_nanos(),
    });
    control
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .write_all(&frame.encode())
}

/// Sends the run's archive (none: it was in the initramfs; only its length
/// when it is on the run disk).
fn send_payload(
    control: &Mutex<UnixStream>,
    payload: Option<(std::fs::File, u64)>,
    on_disk: bool,
) -> io::Result<u64> {
    let mut c = control.lock().unwrap_or_else(|p| p.into_inner());
    let Some((mut payload, len)) = payload else {
        c.write_all(&Frame::Payload(0).encode())?;
        return Ok(0);
    };
    c.write_all(&Frame::Payload(len).encode())?;
    if on_disk {
        return Ok(len);
    }
    let mut from =
        std::io::Seek::seek(&mut payload, io::SeekFrom::Start(0)).map(|_| payload.take(len))?;
    let sent = io::copy(&mut from, &mut *c)?;
    if sent != len {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "the run's archive shrank",
        ));
    }
    Ok(sent)
}

/// What the supervisor's threads share.
#[derive(Default)]
struct State {
    qemu_pid: libc::pid_t,
    flow: Shared,
    received: Received,
    report: Arc<Mutex<Report>>,
}

/// The host's end of each channel and the end QEMU inherits: a socket
/// pair, or for a file-backed channel an unnamed file that the host reads
/// as it grows until `qemu_gone`.
fn open_channels(
    inv: &Invocation,
    channels: &[Channel],
    qemu_gone: &Arc<AtomicBool>,
) -> Result<(Vec<HostEnd>, Vec<OwnedFd>), SuperviseError> {
    let mut host_ends = Vec::new();
    let mut qemu_ends: Vec<OwnedFd> = Vec::new();
    for &channel in channels {
        if inv.file_backed(channel) {
            let file = crate::scratch::unnamed().map_err(SuperviseError::Channels)?;
            qemu_ends.push(file.try_clone().map_err(SuperviseError::Channels)?.into());
            host_ends.push(HostEnd::File {
                file,
                qemu_gone: Arc::clone(qemu_gone),
            });
        } else {
            let (host, qemu) = UnixStream::pair().map_err(SuperviseError::Channels)?;
            host_ends.push(HostEnd::Socket(host));
            qemu_ends.push(qemu.into());
        }
    }
    Ok((host_ends, qemu_ends))
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

/// Reads QEMU's stderr: kept (up to [`MAX_QEMU_STDERR`]) for the report,
/// and watched for signs that KVM cannot run the guest.
fn read_qemu_stderr(stderr: ChildStderr, report: Arc<Mutex<Report>>) -> JoinHandle<String> {
    thread::spawn(move || {
        let mut text = String::new();
        let mut reader = BufReader::new(stderr);
        let mut raw = Vec::new();
        while read_line_capped(&mut reader, &mut raw, MAX_LOG_LINE)
            .is_ok_and(|end| end != LineEnd::Eof)
        {
            let line = String::from_utf8_lossy(&raw);
            let line = line.trim_end_matches(['\n', '\r']).to_string();
            let lower = line.to_lowercase();
            if KVM_ERRORS.iter().any(|e| lower.contains(e)) {
                lock(&report)
                    .kvm_failure
                    .get_or_insert_with(|| line.clone());
            }
            if text.len() < MAX_QEMU_STDERR {
                text.push_str(&line);
                text.push('\n');
            }
        }
        text
    })
}

/// The writer of the control channel, shared by the stdin pump and signal
/// forwarding.
type ControlWriter = Arc<Mutex<UnixStream>>;

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
                    Channel::Port(_) => Box::new(PortReader::new(stream)),
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
                thread::spawn(move || {
                    if let Err(e) = copy_port_to_file(PortReader::new(stream), host.as_deref()) {
                        keep_error(&mut lock(&report).host_errors, e);
                    }
                })
            }
        };
        readers.push(handle);
    }
    Ok((readers, control))
}

/// What the supervisor watches while QEMU runs.
struct Watch<'a> {
    kvm: bool,
    restoring: bool,
    /// Under -gdb: when gdb let the guest run, once it did.
    held: Option<Arc<OnceLock<Instant>>>,
    timeout: Option<Duration>,
    control: Option<ControlWriter>,
    state: &'a State,
    trace: &'a Trace,
}

impl Watch<'_> {
    /// Waits for QEMU to end, meanwhile forwarding signals, enforcing the
    /// deadline, stopping a guest that broke the protocol and a KVM guest
    /// that shows no life.
    fn until_exit(&self, mut child: Child, signals: &mut Signals) -> Option<ExitStatus> {
        let pid = child.id() as libc::pid_t;
        let (exited_tx, exited) = mpsc::channel();
        thread::spawn(move || {
            let _ = exited_tx.send(child.wait().ok());
        });
        // SAFETY: kill(2) on QEMU, which we have not reaped yet; no memory involved.
        let kill_qemu = || unsafe {
            libc::kill(pid, libc::SIGKILL);
        };
        let start = Instant::now();
        // The time the guest has been let run.
        let running = || match &self.held {
            Some(released) => released.get().map(Instant::elapsed),
            None => Some(start.elapsed()),
        };
        let report = &self.state.report;
        let mut forwarded = false;
        // A new size for the binary's terminal, until the guest can take it.
        let mut resized = false;
        loop {
            match exited.recv_timeout(TICK) {
                Ok(status) => return status,
                Err(mpsc::RecvTimeoutError::Disconnected) => return None,
                Err(mpsc::RecvTimeoutError::Timeout) => {}
            }
            for sig in signals.pending() {
                if sig == SIGWINCH {
                    resized = true;
                    continue;
                }
                let sent = !forwarded && self.forward(sig);
                self.trace
                    .log(|| format!("got signal {sig}, forwarded to the binary: {sent}"));
                if sent {
                    forwarded = true;
                } else {
                    lock(report).interrupted = Some(sig);
                    kill_qemu();
                }
            }
            if lock(report).protocol_error.is_some() {
                kill_qemu();
            }
            if resized {
                resized = !self.resize();
            }

            if self.restoring {
                let mut r = lock(report);
                if !r.resumed && r.restore_failure.is_none() && start.elapsed() >= RESTORE_DEADLINE
                {
                    r.restore_failure = Some(format!(
                        "no answer from the restored guest in {RESTORE_DEADLINE:?}"
                    ));
                }
                if !r.resumed && r.restore_failure.is_some() {
                    kill_qemu();
                }
            }
            if let Some(limit) = self.timeout
                && running().is_some_and(|t| t >= limit)
                && lock(report).timed_out.is_none()
            {
                lock(report).timed_out = Some(limit);
                kill_qemu();
            }
            if self.kvm {
                let mut r = lock(report);
                if !r.alive
                    && r.kvm_failure.is_none()
                    && running().is_some_and(|t| t >= KVM_WATCHDOG)
                {
                    r.kvm_failure = Some(format!(
                        "no sign of life from the guest in {KVM_WATCHDOG:?}"
                    ));
                }
                if !r.alive && r.kvm_failure.is_some() {
                    kill_qemu();
                }
            }
        }
    }

    /// Sends the terminal's size to the binary's, if the guest is ready to
    /// take it.
    fn resize(&self) -> bool {
        let Ok(size) = super::terminal::size(super::terminal::STDIN) else {
            return true;
        };
        self.send_when_ready(&Frame::Resize(size))
    }

    /// Sends `sig` to the binary, if the guest is ready to take it.
    fn forward(&self, sig: i32) -> bool {
        self.send_when_ready(&Frame::Signal(sig as u8))
    }

    /// Sends `frame`, if the guest is ready to take it.
    fn send_when_ready(&self, frame: &Frame) -> bool {
        let ready = self
            .state
            .flow
            .0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .ready;
        match &self.control {
            Some(c) if ready => {
                let mut c = c.lock().unwrap_or_else(|p| p.into_inner());
                c.write_all(&frame.encode()).is_ok()
            }
            _ => false,
        }
    }
}

/// In the child before exec: puts `fds[i]` at `ARCHIVE_FD + i`, without
/// close-on-exec. Two steps, so that no source is overwritten before it moved.
fn place_fds(fds: &[i32]) -> io::Result<()> {
    let above = ARCHIVE_FD + fds.len() as i32;
    let mut moved = Vec::with_capacity(fds.len());
    for &fd in fds {
        // SAFETY: fcntl(2) on an fd we own; async-signal-safe.
        let tmp = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, above) };
        if tmp < 0 {
            return Err(io::Error::last_os_error());
        }
        moved.push(tmp);
    }
    for (i, tmp) in moved.into_iter().enumerate() {
        // SAFETY: dup2(2) onto a fixed number; async-signal-safe. The new fd
        // does not have close-on-exec.
        if unsafe { libc::dup2(tmp, ARCHIVE_FD + i as i32) } < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

fn lock(report: &Mutex<Report>) -> std::sync::MutexGuard<'_, Report> {
    report.lock().unwrap_or_else(|p| p.into_inner())
}

/// Lines of the kernel log that mean the guest kernel gave up.
const PANIC: &str = "Kernel panic - not syncing";
/// Lines of the kernel log that mean the OOM killer struck.
const OOM: [&str; 2] = ["Out of memory:", "oom-kill:"];

/// Reads the kernel log: shows all of it with `verbose`, otherwise only the
/// init's messages and the lines that explain a failure. In standalone mode
/// this is also where the exit marker arrives.
fn read_log(stream: HostEnd, verbose: bool, has_marker: bool, report: &Mutex<Report>) {
    let mut reader = BufReader::new(stream);
    let mut line = Vec::new();
    let mut in_panic = false;
    let stderr = io::stderr();
    while read_line_capped(&mut reader, &mut line, MAX_LOG_LINE)
        .is_ok_and(|end| end != LineEnd::Eof)
    {
        lock(report).alive = true;
        let text = String::from_utf8_lossy(&line);
        let text = text.trim_end_matches(['\n', '\r']);
        if has_marker && let Some(code) = standalone_exit_code(text.as_bytes()) {
            lock(report).exit_code = Some(code);
            continue;
        }
        if let Some(pos) = text.find(INIT_FATAL_PREFIX) {
            let why = &text[pos + INIT_FATAL_PREFIX.len()..];
            lock(report).fatal.get_or_insert_with(|| why.to_string());
            if verbose {
                let _ = writeln!(stderr.lock(), "{text}");
            }
            continue;
        }
        if let Some(pos) = text.find(PANIC) {
            lock(report).panic = Some(text[pos..].to_string());
            in_panic = true;
        }
        if OOM.iter().any(|p| text.contains(p)) {
            lock(report).oom = true;
        }
        // In standalone mode the console is also the binary's stderr: lines
        // without the kernel's "[ seconds.micros]" stamp are the binary's.
        let from_binary = has_marker && !text.trim_start().starts_with('[');
        let shown = if verbose || in_panic || from_binary {
            Some(text)
        } else {
            text.find(INIT_LOG_PREFIX).map(|pos| &text[pos..])
        };
        if let Some(shown) = shown {
            let _ = writeln!(stderr.lock(), "{shown}");
        }
    }
}

/// Reads events from the init.
fn read_control(stream: UnixStream, ctx: &ControlContext) {
    let ControlContext {
        stop_when_finished,
        flow,
        report,
        outputs,
        received,
        writer,
        handover,
        trace,
    } = ctx;
    let mut expected = None;
    // Reads wake up now and then, so that a file transfer can notice a stall.
    let _ = stream.set_read_timeout(Some(CONTROL_POLL));
    let mut reader = BufReader::new(stream);
    let mut line = Vec::new();
    loop {
        match read_line_capped(&mut reader, &mut line, MAX_EVENT_LINE) {
            Ok(LineEnd::Eof) | Err(_) => break,
            Ok(LineEnd::Full) => {
                lock(report).protocol_error = Some(format!(
                    "an event line on the control channel is longer than {MAX_EVENT_LINE} bytes"
                ));
                return;
            }
            Ok(LineEnd::Line) => {}
        }
        let Some(event) = Event::parse(line.strip_suffix(b"\n").unwrap_or(&line)) else {
            continue;
        };
        lock(report).alive = true;
        if !matches!(event, Event::StdinAck(_)) {
            trace.log(|| format!("guest event: {event}"));
        }
        let (lock_flow, cv) = &**flow;
        match event {
            Event::Parked => {
                lock(report).parked = true;
                match handover.parked(writer) {
                    Ok(saved) => lock(report).saved = saved,
                    Err(e) => trace.log(|| format!("resuming the guest: {e}")),
                }
            }
            Event::Resumed => lock(report).resumed = true,
            Event::Ready => {
                lock_flow.lock().unwrap_or_else(|p| p.into_inner()).ready = true;
                cv.notify_all();
            }
            Event::StdinAck(n) => {
                let mut f = lock_flow.lock().unwrap_or_else(|p| p.into_inner());
                f.in_flight = f.in_flight.saturating_sub(n);
                cv.notify_all();
            }
            Event::Started => lock(report).started = true,
            Event::Times(t) => {
                let ms = |us: u64| us as f64 / 1000.0;
                trace.log(|| {
                    format!(
                        "guest clock: kernel start → init {:.1} ms, init → binary started {:.1} ms, \
                         binary ran {:.1} ms, binary exit → exit code sent {:.1} ms",
                        ms(t.init),
                        ms(t.started.saturating_sub(t.init)),
                        ms(t.exited.saturating_sub(t.started)),
                        ms(t.reported.saturating_sub(t.exited))
                    )
                });
            }
            Event::Signaled(sig) => lock(report).signaled = Some(sig),
            Event::OutOfMemory => lock(report).oom = true,
            Event::Error(msg) => keep_error(&mut lock(report).init_errors, msg),
            Event::Streams { stdout, stderr } => expected = Some([stdout, stderr]),
            Event::ExitCode(code) => {
                lock(report).exit_code = Some(code);
                if let Some(expected) = expected {
                    wait_for_streams(received, expected, trace);
                    let mut w = writer.lock().unwrap_or_else(|p| p.into_inner());
                    let _ = w.write_all(&Frame::Done.encode());
                    // A guest without the host's files has nothing left to
                    // do: it is not waited for to power off.
                    if let Some(pid) = stop_when_finished {
                        // SAFETY: kill(2) on QEMU, which cannot have been
                        // reaped: it does not end before the guest has the
                        // Done just written. No memory involved.
                        unsafe { libc::kill(*pid, libc::SIGKILL) };
                    }
                }
                trace.log(|| "exit code received; waiting for QEMU to end".into());
            }
            Event::File { id, len, name } => {
                let target = output_target(outputs, id, &name);
                let shown = match &target {
                    Ok(t) => t.path().display().to_string(),
                    Err(_) => format!("output {id}"),
                };
                // The announced bytes are read either way, to keep the
                // channel in step.
                let received = match target {
                    Ok(t) => receive_file(&mut reader, len, Some(&t), FILE_STALL),
                    Err(refused) => receive_file(&mut reader, len, None, FILE_STALL)
                        .and(Err(io::Error::other(refused))),
                };
                match received {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::TimedOut => {
                        lock(report).protocol_error = Some(format!("{shown}: {e}"));
                        return;
                    }
                    Err(e) => keep_error(&mut lock(report).host_errors, format!("{shown}: {e}")),
                }
            }
        }
    }
}

/// The host's end of a channel.
enum HostEnd {
    /// One end of a socket pair; QEMU has the other.
    Socket(UnixStream),
    /// An unlinked file QEMU writes to: read as it grows, and to its end
    /// once QEMU is gone.
    File {
        file: std::fs::File,
        qemu_gone: Arc<AtomicBool>,
    },
}

/// How often a file channel is looked at for new data.
const FOLLOW_POLL: Duration = Duration::from_millis(5);

impl Read for HostEnd {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            HostEnd::Socket(stream) => stream.read(buf),
            HostEnd::File { file, qemu_gone } => loop {
                // Looked at before reading: once QEMU is gone, an empty read
                // is the end.
                let gone = qemu_gone.load(Ordering::SeqCst);
                let n = file.read(buf)?;
                if n > 0 || gone {
                    return Ok(n);
                }
                thread::sleep(FOLLOW_POLL);
            },
        }
    }
}

/// Bytes received so far on the stdout and stderr channels.
type Received = Arc<[AtomicU64; 2]>;

/// What the control reader works with.
struct ControlContext {
    /// QEMU's pid, to stop it once the host has everything.
    stop_when_finished: Option<libc::pid_t>,
    flow: Shared,
    report: Arc<Mutex<Report>>,
    outputs: Vec<Output>,
    received: Received,
    writer: Arc<Mutex<UnixStream>>,
    handover: Arc<Handover>,
    trace: Trace,
}

/// How long output may stall before the host stops waiting for the rest.
const STREAM_STALL: Duration = Duration::from_secs(10);

/// Waits until the stdout and stderr channels delivered what the guest says
/// it wrote, as long as they keep making progress.
fn wait_for_streams(received: &[AtomicU64; 2], expected: [u64; 2], trace: &Trace) {
    let now = || [0, 1].map(|i| received[i].load(Ordering::SeqCst));
    let mut last = now();
    let mut since = Instant::now();
    while now().iter().zip(expected).any(|(&got, want)| got < want) {
        if now() != last {
            last = now();
            since = Instant::now();
        } else if since.elapsed() > STREAM_STALL {
            trace.log(|| format!("output stalled at {last:?} of {expected:?} bytes"));
            return;
        }
        thread::sleep(Duration::from_millis(1));
    }
}

/// Where a file the guest sends is written on the host.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Target {
    /// A path the user named (a go test flag): used as named, as go test
    /// would, symlinks and all.
    Named(std::path::PathBuf),
    /// A file the guest named in an output directory the user named.
    InDir(std::path::PathBuf),
}

impl Target {
    fn path(&self) -> &Path {
        match self {
            Target::Named(p) | Target::InDir(p) => p,
        }
    }

    /// Creates the file, only now that the guest sent it (a file the guest
    /// never wrote is left alone). A file the guest named replaces the
    /// directory entry: whatever was there, a symlink or a hard link to a
    /// file elsewhere, is unlinked, never written through.
    fn create(&self) -> io::Result<std::fs::File> {
        use std::os::unix::fs::OpenOptionsExt;
        let path = self.path();
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        match self {
            Target::Named(path) => std::fs::File::create(path),
            Target::InDir(path) => {
                match std::fs::remove_file(path) {
                    Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                    _ => {}
                }
                std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .custom_flags(libc::O_NOFOLLOW)
                    .open(path)
            }
        }
    }
}

/// The host file for output `id` with the name the guest gave: a file
/// output takes no name, a directory output a plain one that stays inside
/// it. Anything else is refused: the guest chooses no path on the host.
fn output_target(outputs: &[Output], id: u32, name: &str) -> Result<Target, String> {
    let output = outputs
        .get(id as usize)
        .ok_or_else(|| "the guest sent an output that was not asked for".to_string())?;
    let plain = !name.is_empty()
        && name != "."
        && name != ".."
        && !name.contains(['/', '\0'])
        && name.len() <= 255;
    match (output.dir, name) {
        (false, "") => Ok(Target::Named(output.host.clone())),
        (true, _) if plain => Ok(Target::InDir(output.host.join(name))),
        _ => Err(format!("refused the file name {name:?} the guest chose")),
    }
}

/// How often a read of the control channel gives up waiting, so that a
/// file that stopped arriving is noticed.
const CONTROL_POLL: Duration = Duration::from_millis(500);

/// How long a file from the guest may stop arriving before the run counts
/// as broken: a guest that announced more than it sends has put the
/// channel out of step, and nothing after it can be read as events.
const FILE_STALL: Duration = Duration::from_secs(10);

/// Whether a read failed only because nothing arrived in time.
fn timed_out(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
    )
}

/// Writes the next `len` bytes of the control channel to `target`; without
/// a target they are read and dropped. The bytes are streamed: nothing is
/// allocated for the size the guest announced, and a write that fails on
/// the host still reads the rest, to keep the channel in step. Ends with
/// [`io::ErrorKind::TimedOut`] when nothing arrived for `stall`.
fn receive_file(
    reader: &mut impl Read,
    len: u64,
    target: Option<&Target>,
    stall: Duration,
) -> io::Result<()> {
    let mut write_error = None;
    let mut file = match target.map(Target::create).transpose() {
        Ok(file) => file,
        Err(e) => {
            write_error = Some(e);
            None
        }
    };
    let mut buf = vec![0u8; 64 * 1024];
    let mut got = 0u64;
    let mut last = Instant::now();
    while got < len {
        let want = usize::try_from(len - got).map_or(buf.len(), |left| left.min(buf.len()));
        match reader.read(&mut buf[..want]) {
            Ok(0) => {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("got {got} of {len} bytes"),
                ));
            }
            Ok(n) => {
                got += n as u64;
                last = Instant::now();
                if let Some(f) = &mut file
                    && let Err(e) = f.write_all(&buf[..n])
                {
                    write_error = Some(e);
                    file = None;
                }
            }
            Err(e) if timed_out(&e) => {
                if last.elapsed() >= stall {
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!("stopped arriving after {got} of {len} bytes"),
                    ));
                }
            }
            Err(e) => return Err(e),
        }
    }
    write_error.map_or(Ok(()), Err)
}

/// Copies a standalone port to its host file, created (truncated) only once
/// the first bytes arrive, so a file the guest never wrote is left alone.
/// The port is read to its end whatever happens to the file.
fn copy_port_to_file(from: impl Read, target: Option<&Path>) -> Result<(), String> {
    let mut file: Option<std::fs::File> = None;
    let mut failure: Option<String> = None;
    for_each_chunk(from, |chunk| {
        let (Some(target), None) = (target, &failure) else {
            return;
        };
        let written = match &mut file {
            Some(f) => f.write_all(chunk),
            None => target
                .parent()
                .map_or(Ok(()), std::fs::create_dir_all)
                .and_then(|()| std::fs::File::create(target))
                .and_then(|mut f| {
                    f.write_all(chunk)?;
                    file = Some(f);
                    Ok(())
                }),
        };
        if let Err(e) = written {
            failure = Some(format!("{}: {e}", target.display()));
        }
    });
    failure.map_or(Ok(()), Err)
}

/// Reads `from` to its end (or its first error), handing each chunk to
/// `sink`.
fn for_each_chunk(mut from: impl Read, mut sink: impl FnMut(&[u8])) {
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        match from.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => sink(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return,
        }
    }
}

/// Sends our stdin to the guest once it is ready, never more than
/// [`STDIN_WINDOW`] bytes ahead of what it acknowledged, then end-of-file.
/// Runs detached: it may block on a stdin that never ends.
fn pump_stdin(control: &Mutex<UnixStream>, flow: &Shared) {
    let (lock, cv) = &**flow;
    let wait_until = |pred: &dyn Fn(&Flow) -> bool| -> bool {
        let mut f = lock.lock().unwrap_or_else(|p| p.into_inner());
        while !pred(&f) && !f.done {
            f = cv.wait(f).unwrap_or_else(|p| p.into_inner());
        }
        !f.done
    };
    if !wait_until(&|f| f.ready) {
        return;
    }
    let mut stdin = io::stdin().lock();
    let mut buf = vec![0u8; MAX_STDIN_FRAME];
    loop {
        let n = match stdin.read(&mut buf) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => 0,
        };
        let send = |frame: Frame| {
            let mut c = control.lock().unwrap_or_else(|p| p.into_inner());
            c.write_all(&frame.encode())
        };
        if n == 0 {
            let _ = send(Frame::StdinEof);
            return;
        }
        if !wait_until(&|f| f.in_flight + n <= STDIN_WINDOW) {
            return;
        }
        lock.lock().unwrap_or_else(|p| p.into_inner()).in_flight += n;
        if send(Frame::Stdin(buf[..n].to_vec())).is_err() {
            return;
        }
    }
}

/// A duplicate of one of our output fds, written to without std's locks and
/// buffers: holding `Stderr`'s lock for a whole copy would stall every other
/// writer of stderr (the kernel log, the debug trace). The duplicate shares
/// the open file description, so `>>` still appends.
fn output(fd: std::os::fd::BorrowedFd<'_>) -> Option<std::fs::File> {
    fd.try_clone_to_owned().ok().map(std::fs::File::from)
}

/// Copies a stream to one of our outputs, byte for byte. If the output goes
/// away (a closed pipe), the rest is still read and dropped: a guest that
/// cannot write would never finish.
fn copy_out(from: impl Read, mut to: Option<std::fs::File>, received: &AtomicU64) {
    for_each_chunk(from, |chunk| {
        received.fetch_add(chunk.len() as u64, Ordering::SeqCst);
        if let Some(file) = &mut to
            && file.write_all(chunk).is_err()
        {
            to = None;
        }
    });
}

/// How [`read_line_capped`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LineEnd {
    /// Nothing more: the stream ended.
    Eof,
    /// A line up to its newline (or to the stream's end).
    Line,
    /// The limit was reached before a newline.
    Full,
}

/// Reads into `line` (cleared first) up to and including the next newline,
/// but never more than `max` bytes: a line without end cannot make the
/// buffer grow without bound.
fn read_line_capped(
    reader: &mut impl BufRead,
    line: &mut Vec<u8>,
    max: usize,
) -> io::Result<LineEnd> {
    line.clear();
    loop {
        let available = match reader.fill_buf() {
            Ok(b) => b,
            Err(e) if timed_out(&e) => continue,
            Err(e) => return Err(e),
        };
        if available.is_empty() {
            return Ok(if line.is_empty() {
                LineEnd::Eof
            } else {
                LineEnd::Line
            });
        }
        let room = &available[..available.len().min(max - line.len())];
        if let Some(i) = room.iter().position(|&b| b == b'\n') {
            line.extend_from_slice(&room[..=i]);
            reader.consume(i + 1);
            return Ok(LineEnd::Line);
        }
        let n = room.len();
        line.extend_from_slice(room);
        reader.consume(n);
        if line.len() >= max {
            return Ok(LineEnd::Full);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
