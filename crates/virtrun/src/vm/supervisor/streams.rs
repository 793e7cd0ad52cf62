//! The binary's streams: stdin framed to the guest within its window,
//! stdout and stderr copied to ours byte for byte.

use super::*;
use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use virtrun_protocol::{Frame, MAX_STDIN_FRAME, STDIN_WINDOW};

/// Reads `from` to its end (or its first error), handing each chunk to
/// `sink`.
pub(super) fn for_each_chunk(mut from: impl Read, mut sink: impl FnMut(&[u8])) {
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
pub(super) fn pump_stdin(control: &Mutex<UnixStream>, flow: &Shared) {
    let (flow_lock, cv) = &**flow;
    let wait_until = |pred: &dyn Fn(&Flow) -> bool| -> bool {
        let mut f = lock(flow_lock);
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
            let mut c = lock(control);
            c.write_all(&frame.encode())
        };
        if n == 0 {
            let _ = send(Frame::StdinEof);
            return;
        }
        if !wait_until(&|f| f.in_flight + n <= STDIN_WINDOW) {
            return;
        }
        lock(flow_lock).in_flight += n;
        if send(Frame::Stdin(buf[..n].to_vec())).is_err() {
            return;
        }
    }
}

/// A duplicate of one of our output fds, written to without std's locks and
/// buffers: holding `Stderr`'s lock for a whole copy would stall every other
/// writer of stderr (the kernel log, the debug trace). The duplicate shares
/// the open file description, so `>>` still appends.
pub(super) fn output(fd: std::os::fd::BorrowedFd<'_>) -> Option<std::fs::File> {
    fd.try_clone_to_owned().ok().map(std::fs::File::from)
}

/// Copies a stream to one of our outputs, byte for byte. If the output goes
/// away (a closed pipe), the rest is still read and dropped: a guest that
/// cannot write would never finish.
pub(super) fn copy_out(from: impl Read, mut to: Option<std::fs::File>, received: &AtomicU64) {
    for_each_chunk(from, |chunk| {
        received.fetch_add(chunk.len() as u64, Ordering::SeqCst);
        if let Some(file) = &mut to
            && file.write_all(chunk).is_err()
        {
            to = None;
        }
    });
}
