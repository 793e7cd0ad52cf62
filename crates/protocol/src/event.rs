//! Guest to host on the control channel: events, one text line each.

use super::*;
use std::fmt;

/// A message guest → host on the control channel, one per line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The init has booted as far as every run of its guest identity does
    /// (modules of the transport loaded, channels open) and waits for
    /// [`Frame::Resume`]: the moment a snapshot is taken.
    Parked,
    /// The init took [`Frame::Resume`] (a restored guest is alive) and waits
    /// for [`Frame::Payload`].
    Resumed,
    /// The init has its channels open and accepts stdin frames.
    Ready,
    /// The binary started (its first instruction is near).
    Started,
    /// The guest consumed this many stdin bytes; the host may send more.
    StdinAck(usize),
    /// The binary was killed by this signal.
    Signaled(i32),
    /// The guest's OOM killer struck during the run.
    OutOfMemory,
    /// The init failed; the message says why.
    Error(String),
    /// Where the guest's time went, sent just before the exit code.
    Times(GuestTimes),
    /// How many bytes the guest wrote to the stdout and stderr channels;
    /// after the exit code, the guest waits for [`Frame::Done`].
    Streams {
        /// Bytes on the stdout channel.
        stdout: u64,
        /// Bytes on the stderr channel.
        stderr: u64,
    },
    /// An output file follows: exactly `len` raw bytes after this line.
    /// `name` is empty for a file output, the file's name for one in a
    /// directory output.
    File {
        /// Index into [`GuestConfig::outputs`].
        id: u32,
        /// Bytes that follow.
        len: u64,
        /// Name within a directory output.
        name: String,
    },
    /// The binary's exit code; the last event of a run.
    ExitCode(i32),
}

pub(super) const EV_PARKED: &str = "VIRTRUN_PARKED";
pub(super) const EV_RESUMED: &str = "VIRTRUN_RESUMED";
pub(super) const EV_READY: &str = "VIRTRUN_READY";
pub(super) const EV_STARTED: &str = "VIRTRUN_STARTED";
pub(super) const EV_ACK: &str = "VIRTRUN_STDIN_ACK: ";
pub(super) const EV_SIGNALED: &str = "VIRTRUN_SIGNALED: ";
pub(super) const EV_OOM: &str = "VIRTRUN_OOM";
pub(super) const EV_ERROR: &str = "VIRTRUN_ERROR: ";
pub(super) const EV_TIMES: &str = "VIRTRUN_TIMES: ";
pub(super) const EV_FILE: &str = "VIRTRUN_FILE: ";
pub(super) const EV_STREAMS: &str = "VIRTRUN_STREAMS: ";

/// Moments of a run on the guest's monotonic clock (microseconds since the
/// kernel started).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct GuestTimes {
    /// The init's first instruction.
    pub init: u64,
    /// The binary was started.
    pub started: u64,
    /// The binary ended.
    pub exited: u64,
    /// The init was about to report the exit code.
    pub reported: u64,
}

impl fmt::Display for Event {
    /// The line for this event, without its newline.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Event::Parked => f.write_str(EV_PARKED),
            Event::Resumed => f.write_str(EV_RESUMED),
            Event::Ready => f.write_str(EV_READY),
            Event::Started => f.write_str(EV_STARTED),
            Event::StdinAck(n) => write!(f, "{EV_ACK}{n}"),
            Event::Signaled(s) => write!(f, "{EV_SIGNALED}{s}"),
            Event::OutOfMemory => f.write_str(EV_OOM),
            // A newline would split the event; the message is for humans.
            Event::Error(msg) => write!(f, "{EV_ERROR}{}", msg.replace('\n', " ")),
            Event::ExitCode(code) => write!(f, "{EXIT_MARKER}{code}"),
            Event::File { id, len, name } => write!(f, "{EV_FILE}{id} {len} {name}"),
            Event::Streams { stdout, stderr } => {
                write!(f, "{EV_STREAMS}stdout={stdout} stderr={stderr}")
            }
            Event::Times(t) => write!(
                f,
                "{EV_TIMES}init={} started={} exited={} reported={}",
                t.init, t.started, t.exited, t.reported
            ),
        }
    }
}

impl Event {
    /// Parses one line (without its line ending). The exit marker is found
    /// anywhere in the line, as the original tool does, so that it is seen even
    /// after output without a trailing newline on a shared console.
    pub fn parse(line: &[u8]) -> Option<Event> {
        let line = String::from_utf8_lossy(line);
        let line = line.trim_end_matches('\r');
        // An error message is the init's text about anything: it must not be
        // read as an exit code, whatever it quotes.
        if let Some(msg) = line.strip_prefix(EV_ERROR) {
            return Some(Event::Error(msg.to_string()));
        }
        if let Some(pos) = line.find(EXIT_MARKER) {
            return leading_int(&line[pos + EXIT_MARKER.len()..]).map(Event::ExitCode);
        }
        if let Some(n) = line.strip_prefix(EV_ACK) {
            return n.parse().ok().map(Event::StdinAck);
        }
        if let Some(s) = line.strip_prefix(EV_SIGNALED) {
            return s.parse().ok().map(Event::Signaled);
        }
        if let Some(fields) = line.strip_prefix(EV_STREAMS) {
            let (out, err) = fields.split_once(' ')?;
            return Some(Event::Streams {
                stdout: out.strip_prefix("stdout=")?.parse().ok()?,
                stderr: err.strip_prefix("stderr=")?.parse().ok()?,
            });
        }
        if let Some(fields) = line.strip_prefix(EV_FILE) {
            let mut parts = fields.splitn(3, ' ');
            let id = parts.next()?.parse().ok()?;
            let len = parts.next()?.parse().ok()?;
            let name = parts.next()?.to_string();
            return Some(Event::File { id, len, name });
        }
        if let Some(fields) = line.strip_prefix(EV_TIMES) {
            let mut t = GuestTimes::default();
            for field in fields.split(' ') {
                let (key, value) = field.split_once('=')?;
                let value = value.parse().ok()?;
                match key {
                    "init" => t.init = value,
                    "started" => t.started = value,
                    "exited" => t.exited = value,
                    "reported" => t.reported = value,
                    _ => return None,
                }
            }
            return Some(Event::Times(t));
        }
        match line {
            EV_PARKED => Some(Event::Parked),
            EV_RESUMED => Some(Event::Resumed),
            EV_READY => Some(Event::Ready),
            EV_STARTED => Some(Event::Started),
            EV_OOM => Some(Event::OutOfMemory),
            _ => None,
        }
    }
}
