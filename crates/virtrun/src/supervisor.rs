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

use crate::gotest::{FIRST_FILE_PORT, Output};
use crate::port::PortReader;
use crate::qemu::{Channel, Invocation};
use crate::trace::Trace;
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;
use std::ffi::OsString;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};
use virtrun_protocol::{
    Event, Frame, INIT_LOG_PREFIX, MAX_STDIN_FRAME, Role, STDIN_WINDOW, standalone_exit_code,
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
    /// Errors the init reported.
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
    /// Files the guest sent that could not be written on the host.
    pub host_errors: Vec<String>,
    /// KVM was used and failed before the guest showed a sign of life: the
    /// run should be repeated under emulation.
    pub kvm_failure: Option<String>,
}

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

/// First fd QEMU sees its channel ends at.
const FIRST_CHANNEL_FD: i32 = 3;

/// Signals virtrun passes on to the binary. Register them with
/// [`catch_signals`] before anything that must be cleaned up exists.
const FORWARDED: [i32; 3] = [SIGINT, SIGTERM, SIGHUP];

/// Catches the forwarded signals from now on, so that none of them kills
/// virtrun before its temporary files are gone.
pub fn catch_signals() -> io::Result<Signals> {
    Signals::new(FORWARDED)
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

/// How often the supervisor looks at signals and the deadline.
const TICK: Duration = Duration::from_millis(20);

/// Runs the guest to the end (or to `timeout`) and reports what happened.
/// The first SIGINT/SIGTERM/SIGHUP goes to the binary; a second one, or one
/// before the guest can take it, stops QEMU at once.
pub fn run(
    inv: &Invocation,
    outputs: &[Output],
    timeout: Option<Duration>,
    signals: &mut Signals,
    trace: &Trace,
) -> Result<Report, SuperviseError> {
    let channels = inv.channels();
    let qemu_gone = Arc::new(AtomicBool::new(false));
    let mut host_ends = Vec::new();
    let mut qemu_ends: Vec<OwnedFd> = Vec::new();
    for &channel in &channels {
        if inv.file_backed(channel) {
            let file = tempfile::tempfile().map_err(SuperviseError::Channels)?;
            qemu_ends.push(file.try_clone().map_err(SuperviseError::Channels)?.into());
            host_ends.push(HostEnd::File {
                file,
                qemu_gone: Arc::clone(&qemu_gone),
            });
        } else {
            let (host, qemu) = UnixStream::pair().map_err(SuperviseError::Channels)?;
            host_ends.push(HostEnd::Socket(host));
            qemu_ends.push(qemu.into());
        }
    }
    let fds: Vec<i32> = (0..channels.len() as i32)
        .map(|i| FIRST_CHANNEL_FD + i)
        .collect();
    let args = inv.args(&fds);
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
    let raw: Vec<i32> = qemu_ends.iter().map(AsRawFd::as_raw_fd).collect();
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
    let mut child = cmd.spawn().map_err(|reason| SuperviseError::Spawn {
        bin: inv.qemu_bin.display().to_string(),
        reason,
    })?;
    drop(qemu_ends);
    trace.log(|| "QEMU started".into());

    let start = Instant::now();
    let flow: Shared = Arc::default();
    let received: Received = Arc::default();
    let mut control: Option<Arc<Mutex<UnixStream>>> = None;
    let report = Arc::new(Mutex::new(Report::default()));
    let mut readers: Vec<JoinHandle<()>> = Vec::new();
    let qemu_stderr = child.stderr.take().map(|s| {
        let report = Arc::clone(&report);
        thread::spawn(move || {
            let mut text = String::new();
            for line in BufReader::new(s).lines().map_while(Result::ok) {
                let lower = line.to_lowercase();
                if KVM_ERRORS.iter().any(|e| lower.contains(e)) {
                    lock(&report)
                        .kvm_failure
                        .get_or_insert_with(|| line.clone());
                }
                text.push_str(&line);
                text.push('\n');
            }
            text
        })
    });

    for (channel, stream) in channels.iter().zip(host_ends) {
        let report = Arc::clone(&report);
        let flow = Arc::clone(&flow);
        let verbose = inv.verbose;
        let trace = trace.clone();
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
                let outputs = outputs.to_vec();
                let received = Arc::clone(&received);
                let writer = Arc::new(Mutex::new(
                    stream.try_clone().map_err(SuperviseError::Channels)?,
                ));
                control = Some(Arc::clone(&writer));
                let flow_in = Arc::clone(&flow);
                let writer_in = Arc::clone(&writer);
                thread::spawn(move || pump_stdin(&writer_in, &flow_in));
                let ctx = ControlContext {
                    flow,
                    report,
                    outputs,
                    received,
                    writer,
                    trace,
                };
                thread::spawn(move || read_control(stream, &ctx))
            }
            Channel::Role(Role::Stdout) | Channel::Port(1) => {
                let to = output(io::stdout().as_fd());
                let count = Arc::clone(&received);
                let from: Box<dyn Read + Send> = match channel {
                    Channel::Port(_) => Box::new(PortReader::new(stream)),
                    _ => Box::new(stream),
                };
                thread::spawn(move || copy_out(from, to, &count[0]))
            }
            Channel::Role(Role::Stderr) => {
                let to = output(io::stderr().as_fd());
                let count = Arc::clone(&received);
                thread::spawn(move || copy_out(stream, to, &count[1]))
            }
            Channel::Port(n) => {
                let host = n
                    .checked_sub(FIRST_FILE_PORT)
                    .and_then(|i| outputs.get(i))
                    .map(|o| o.host.clone());
                thread::spawn(move || {
                    if let Err(e) = copy_port_to_file(PortReader::new(stream), host.as_deref()) {
                        lock(&report).host_errors.push(e);
                    }
                })
            }
        };
        readers.push(handle);
    }

    let pid = child.id() as libc::pid_t;
    let (exited_tx, exited) = mpsc::channel();
    thread::spawn(move || {
        let _ = exited_tx.send(child.wait().ok());
    });
    // SAFETY: kill(2) on QEMU, which we have not reaped yet; no memory involved.
    let kill_qemu = || unsafe {
        libc::kill(pid, libc::SIGKILL);
    };
    let mut forwarded = false;
    let status = loop {
        match exited.recv_timeout(TICK) {
            Ok(status) => break status,
            Err(mpsc::RecvTimeoutError::Disconnected) => break None,
            Err(mpsc::RecvTimeoutError::Timeout) => {}
        }
        for sig in signals.pending() {
            let ready = flow.0.lock().unwrap_or_else(|p| p.into_inner()).ready;
            let sent = match &control {
                Some(c) if ready && !forwarded => {
                    let mut c = c.lock().unwrap_or_else(|p| p.into_inner());
                    c.write_all(&Frame::Signal(sig as u8).encode()).is_ok()
                }
                _ => false,
            };
            trace.log(|| format!("got signal {sig}, forwarded to the binary: {sent}"));
            if sent {
                forwarded = true;
            } else {
                lock(&report).interrupted = Some(sig);
                kill_qemu();
            }
        }
        if let Some(limit) = timeout
            && start.elapsed() >= limit
            && lock(&report).timed_out.is_none()
        {
            lock(&report).timed_out = Some(limit);
            kill_qemu();
        }
        if inv.kvm {
            let mut r = lock(&report);
            if !r.alive && r.kvm_failure.is_none() && start.elapsed() >= KVM_WATCHDOG {
                r.kvm_failure = Some(format!(
                    "no sign of life from the guest in {KVM_WATCHDOG:?}"
                ));
            }
            if !r.alive && r.kvm_failure.is_some() {
                kill_qemu();
            }
        }
    };
    trace.log(|| format!("QEMU exited: {status:?}"));
    qemu_gone.store(true, Ordering::SeqCst);
    for r in readers {
        let _ = r.join();
    }
    {
        let (lock, cv) = &*flow;
        lock.lock().unwrap_or_else(|p| p.into_inner()).done = true;
        cv.notify_all();
    }
    let qemu_stderr = qemu_stderr.and_then(|h| h.join().ok()).unwrap_or_default();
    let mut report = report.lock().unwrap_or_else(|p| p.into_inner()).clone();
    report.qemu_status = status;
    // A KVM failure only counts before the guest showed life; afterwards the
    // run is the guest's own.
    if !inv.kvm || report.alive || report.interrupted.is_some() || report.timed_out.is_some() {
        report.kvm_failure = None;
    }
    report.qemu_stderr = qemu_stderr;
    Ok(report)
}

/// In the child before exec: puts `fds[i]` at `FIRST_CHANNEL_FD + i`, without
/// close-on-exec. Two steps, so that no source is overwritten before it moved.
fn place_fds(fds: &[i32]) -> io::Result<()> {
    let above = FIRST_CHANNEL_FD + fds.len() as i32;
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
        if unsafe { libc::dup2(tmp, FIRST_CHANNEL_FD + i as i32) } < 0 {
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
    loop {
        line.clear();
        match reader.read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        lock(report).alive = true;
        let text = String::from_utf8_lossy(&line);
        let text = text.trim_end_matches(['\n', '\r']);
        if has_marker && let Some(code) = standalone_exit_code(text.as_bytes()) {
            lock(report).exit_code = Some(code);
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
        flow,
        report,
        outputs,
        received,
        writer,
        trace,
    } = ctx;
    let mut expected = None;
    let mut reader = BufReader::new(stream);
    let mut line = Vec::new();
    loop {
        line.clear();
        match reader.read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
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
            Event::Error(msg) => lock(report).init_errors.push(msg),
            Event::Streams { stdout, stderr } => expected = Some([stdout, stderr]),
            Event::ExitCode(code) => {
                lock(report).exit_code = Some(code);
                if let Some(expected) = expected {
                    wait_for_streams(received, expected, trace);
                    let mut w = writer.lock().unwrap_or_else(|p| p.into_inner());
                    let _ = w.write_all(&Frame::Done.encode());
                }
                trace.log(|| "exit code received; waiting for QEMU to end".into());
            }
            Event::File { id, len, name } => {
                let target = outputs
                    .get(id as usize)
                    .and_then(|o| match (o.dir, name.as_str()) {
                        (false, "") => Some(o.host.clone()),
                        // A plain name: nothing from the guest may point elsewhere.
                        (true, n) if !n.is_empty() && !n.contains('/') && n != ".." && n != "." => {
                            Some(o.host.join(n))
                        }
                        _ => None,
                    });
                if let Err(e) = receive_file(&mut reader, len, target.as_deref()) {
                    let shown =
                        target.map_or_else(|| format!("output {id}"), |t| t.display().to_string());
                    lock(report).host_errors.push(format!("{shown}: {e}"));
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
    flow: Shared,
    report: Arc<Mutex<Report>>,
    outputs: Vec<Output>,
    received: Received,
    writer: Arc<Mutex<UnixStream>>,
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

/// Writes the next `len` bytes of the control channel to `target` (created
/// only now that the guest sent it, so a file the guest never wrote is left
/// alone); without a target they are read and dropped.
fn receive_file(reader: &mut impl Read, len: u64, target: Option<&Path>) -> io::Result<()> {
    let mut body = reader.take(len);
    let Some(target) = target else {
        io::copy(&mut body, &mut io::sink())?;
        return Ok(());
    };
    let written = (|| {
        if let Some(dir) = target.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let mut file = std::fs::File::create(target)?;
        io::copy(&mut body, &mut file)
    })();
    // Keep the channel in step whatever happened to the file.
    io::copy(&mut body, &mut io::sink())?;
    match written {
        Ok(n) if n == len => Ok(()),
        Ok(n) => Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!("got {n} of {len} bytes"),
        )),
        Err(e) => Err(e),
    }
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
