//! The kernel log and QEMU's own stderr: panics, out-of-memory kills,
//! the init's errors, in lines of bounded length.

use super::*;
use std::io::{self, BufRead, BufReader, Write};
use std::process::ChildStderr;
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use virtrun_protocol::{INIT_FATAL_PREFIX, INIT_LOG_PREFIX, standalone_exit_code};

/// Lines of the kernel log that mean the guest kernel gave up.
pub(super) const PANIC: &str = "Kernel panic - not syncing";
/// Lines of the kernel log that mean the OOM killer struck.
pub(super) const OOM: [&str; 2] = ["Out of memory:", "oom-kill:"];

/// What the kernel logs when it could not unpack the initramfs.
const UNPACK_FAILED: &str = "Initramfs unpacking failed";

/// Reads the kernel log: shows all of it with `verbose`, otherwise only the
/// init's messages and the lines that explain a failure. In standalone mode
/// this is also where the exit marker arrives.
pub(super) fn read_log(stream: HostEnd, verbose: bool, has_marker: bool, report: &Mutex<Report>) {
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
        if let Some(pos) = text.find(UNPACK_FAILED) {
            let why = text[pos + UNPACK_FAILED.len()..]
                .trim_start_matches(':')
                .trim();
            lock(report)
                .unpack_failed
                .get_or_insert_with(|| why.to_string());
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

/// Reads QEMU's stderr: kept (up to [`MAX_QEMU_STDERR`]) for the report,
/// and watched for signs that KVM cannot run the guest.
pub(super) fn read_qemu_stderr(
    stderr: ChildStderr,
    report: Arc<Mutex<Report>>,
) -> JoinHandle<String> {
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

/// How [`read_line_capped`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum LineEnd {
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
pub(super) fn read_line_capped(
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
