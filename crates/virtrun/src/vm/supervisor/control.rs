//! The control channel: the guest's events (started, exit code, files,
//! times) read into the report, with the host's end of a channel.

use super::*;
use crate::pack::gotest::Output;
use crate::trace::Trace;
use std::io::{self, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self};
use std::time::{Duration, Instant};
use virtrun_protocol::{Event, Frame, MAX_EVENT_LINE};

/// The writer of the control channel, shared by the stdin pump and signal
/// forwarding.
pub(super) type ControlWriter = Arc<Mutex<UnixStream>>;

/// Reads events from the init into the report until the channel ends
/// or the guest breaks the protocol.
pub(super) fn read_control(stream: UnixStream, ctx: &ControlContext) {
    // The byte counts of the binary's streams, once the guest told them.
    let mut expected = None;
    // Reads wake up now and then, so that a file transfer can notice a stall.
    let _ = stream.set_read_timeout(Some(CONTROL_POLL));
    let mut reader = BufReader::new(stream);
    let mut line = Vec::new();
    while let Some(event) = next_event(&mut reader, &mut line, &ctx.report) {
        lock(&ctx.report).alive = true;
        if !matches!(event, Event::StdinAck(_)) {
            ctx.trace.log(|| format!("guest event: {event}"));
        }
        match event {
            Event::Streams { stdout, stderr } => expected = Some([stdout, stderr]),
            Event::ExitCode(code) => exit_code(ctx, code, expected),
            Event::File { id, len, name } => {
                if !receive(ctx, &mut reader, id, len, &name) {
                    return;
                }
            }
            other => record(ctx, other),
        }
    }
}

/// The next event line; `None` at the channel's end or after a line too
/// long to be one (the report says so). Lines that are no event are
/// skipped.
fn next_event(
    reader: &mut BufReader<UnixStream>,
    line: &mut Vec<u8>,
    report: &Mutex<Report>,
) -> Option<Event> {
    loop {
        match read_line_capped(reader, line, MAX_EVENT_LINE) {
            Ok(LineEnd::Eof) | Err(_) => return None,
            Ok(LineEnd::Full) => {
                lock(report).protocol_error = Some(format!(
                    "an event line on the control channel is longer than {MAX_EVENT_LINE} bytes"
                ));
                return None;
            }
            Ok(LineEnd::Line) => {}
        }
        if let Some(event) = Event::parse(line.strip_suffix(b"\n").unwrap_or(line)) {
            return Some(event);
        }
    }
}

/// An event that only changes the report or the flow of stdin.
fn record(ctx: &ControlContext, event: Event) {
    let ControlContext {
        flow,
        report,
        writer,
        handover,
        trace,
        ..
    } = ctx;
    let (flow_lock, cv) = &**flow;
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
            lock(flow_lock).ready = true;
            cv.notify_all();
        }
        Event::StdinAck(n) => {
            let mut f = lock(flow_lock);
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
        // Handled by read_control.
        Event::Streams { .. } | Event::ExitCode(_) | Event::File { .. } => {}
    }
}

/// The binary's exit code: once the streams' bytes it announced (`expected`)
/// arrived, the guest is told the host has everything.
fn exit_code(ctx: &ControlContext, code: i32, expected: Option<[u64; 2]>) {
    lock(&ctx.report).exit_code = Some(code);
    if let Some(expected) = expected {
        wait_for_streams(&ctx.received, expected, &ctx.trace);
        let _ = lock(&ctx.writer).write_all(&Frame::Done.encode());
        // A guest without the host's files has nothing left to do: it is
        // not waited for to power off.
        if let Some(pid) = ctx.stop_when_finished {
            // SAFETY: kill(2) on QEMU, which cannot have been reaped: it
            // does not end before the guest has the Done just written. No
            // memory involved.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
    ctx.trace
        .log(|| "exit code received; waiting for QEMU to end".into());
}

/// A file of output `id` (`len` bytes, named `name` in a directory
/// output), written where the user asked. Its bytes are read either way,
/// to keep the channel in step; false when it stopped arriving (the
/// channel is out of step, the report says so).
fn receive(
    ctx: &ControlContext,
    reader: &mut BufReader<UnixStream>,
    id: u32,
    len: u64,
    name: &str,
) -> bool {
    let target = output_target(&ctx.outputs, id, name);
    let shown = match &target {
        Ok(t) => t.path().display().to_string(),
        Err(_) => format!("output {id}"),
    };
    let received = match target {
        Ok(t) => receive_file(reader, len, Some(&t), FILE_STALL),
        Err(refused) => {
            receive_file(reader, len, None, FILE_STALL).and(Err(io::Error::other(refused)))
        }
    };
    match received {
        Ok(()) => true,
        Err(e) if e.kind() == io::ErrorKind::TimedOut => {
            lock(&ctx.report).protocol_error = Some(format!("{shown}: {e}"));
            false
        }
        Err(e) => {
            keep_error(&mut lock(&ctx.report).host_errors, format!("{shown}: {e}"));
            true
        }
    }
}

/// The host's end of a channel.
pub(super) enum HostEnd {
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
pub(super) const FOLLOW_POLL: Duration = Duration::from_millis(5);

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
pub(super) type Received = Arc<[AtomicU64; 2]>;

/// What the control reader works with.
pub(super) struct ControlContext {
    /// QEMU's pid, to stop it once the host has everything.
    pub(super) stop_when_finished: Option<libc::pid_t>,
    pub(super) flow: Shared,
    pub(super) report: Arc<Mutex<Report>>,
    pub(super) outputs: Vec<Output>,
    pub(super) received: Received,
    pub(super) writer: Arc<Mutex<UnixStream>>,
    pub(super) handover: Arc<Handover>,
    pub(super) trace: Trace,
}

/// How long output may stall before the host stops waiting for the rest.
pub(super) const STREAM_STALL: Duration = Duration::from_secs(10);

/// Waits until the stdout and stderr channels delivered what the guest says
/// it wrote, as long as they keep making progress.
pub(super) fn wait_for_streams(received: &[AtomicU64; 2], expected: [u64; 2], trace: &Trace) {
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

/// How often a read of the control channel gives up waiting, so that a
/// file that stopped arriving is noticed.
pub(super) const CONTROL_POLL: Duration = Duration::from_millis(500);

/// Whether a read failed only because nothing arrived in time.
pub(super) fn timed_out(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
    )
}
