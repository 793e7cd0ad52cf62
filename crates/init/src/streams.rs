//! The binary's streams: pipes pumped to the channels, stdin written as the
//! host sends it, the host's frames forwarded; on resident threads made before
//! the save point.

use super::*;
use std::fs::File;
use std::io::{self, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc;
use std::thread;
use virtrun_protocol::{Event, Frame};
use virtrun_sysinit::channel::{Channels, EventSender, FrameReader};
use virtrun_sysinit::process::{self};
use virtrun_sysinit::{log, pty};

/// The binary's standard streams: pipes, the pumps from them to the
/// channels, the writer of its stdin, the forwarder of the host's frames.
/// Made before the save point: a thread or pipe made after it costs a
/// restored guest more than a booted one (see [`resident`]).
pub(super) struct Streams {
    pub(super) stdin_r: io::PipeReader,
    pub(super) out_w: io::PipeWriter,
    pub(super) err_w: io::PipeWriter,
    pub(super) stdin: mpsc::Sender<Vec<u8>>,
    pub(super) forwarder: mpsc::Sender<Forward>,
    pub(super) pumps: [mpsc::Receiver<u64>; 2],
    pub(super) out_port: File,
    pub(super) err_port: File,
    pub(super) oom_before: u64,
}

pub(super) fn streams(
    channels: Channels,
    events: &EventSender,
) -> virtrun_sysinit::Result<Streams> {
    let pipe = || io::pipe().map_err(|e| virtrun_sysinit::Error::new("create pipe", e));
    let ((stdin_r, stdin_w), (out_r, out_w), (err_r, err_w)) = (pipe()?, pipe()?, pipe()?);
    let Channels {
        control: _,
        stdout: out_port,
        stderr: err_port,
    } = channels;
    Ok(Streams {
        stdin_r,
        out_w,
        err_w,
        stdin: write_stdin(stdin_w, events.clone()),
        forwarder: frame_forwarder(),
        pumps: [
            pump(out_r, clone(&out_port)?),
            pump(err_r, clone(&err_port)?),
        ],
        out_port,
        err_port,
        oom_before: process::oom_kills(),
    })
}

/// Copies a pipe of the binary to its channel until end-of-file. A plain
/// read/write loop: `io::copy` would try `splice`, whose errors on some
/// devices end the copy. When the channel fails, the pipe is still drained,
/// so the binary never dies of a broken pipe that is not its own doing.
pub(super) fn pump(mut from: impl io::Read + Send + 'static, mut to: File) -> mpsc::Receiver<u64> {
    resident(move || {
        let mut buf = vec![0u8; 64 * 1024];
        let mut broken = false;
        let mut sent = 0u64;
        loop {
            let n = match from.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => break,
            };
            if broken {
                continue;
            }
            match to.write_all(&buf[..n]) {
                Ok(()) => sent += n as u64,
                Err(e) => {
                    log::error(&format!("writing to the host: {e}"));
                    broken = true;
                }
            }
        }
        sent
    })
}

/// Writes what it is sent into the binary's stdin, acknowledging each piece
/// once written, so the host never overruns the guest; dropping the sender
/// is stdin's end.
pub(super) fn write_stdin(
    stdin: impl Write + Send + 'static,
    ack: EventSender,
) -> mpsc::Sender<Vec<u8>> {
    let (tx, rx) = mpsc::channel::<Vec<u8>>();
    resident(move || {
        let mut stdin = stdin;
        for data in rx {
            // A binary that closed its stdin just loses the rest; keep
            // acknowledging so the host does not wait for it.
            let _ = stdin.write_all(&data);
            let _ = ack.send(&Event::StdinAck(data.len()));
        }
    });
    tx
}

/// What [`forward_frames`] feeds, known once the run starts.
pub(super) struct Forward {
    pub(super) frames: FrameReader,
    /// To [`write_stdin`].
    pub(super) stdin: mpsc::Sender<Vec<u8>>,
    /// With -tty: the master and the terminal's path.
    pub(super) terminal: Option<(File, PathBuf)>,
    /// The binary, once started.
    pub(super) pid: Arc<AtomicU32>,
    /// Told when the host has all output.
    pub(super) done: mpsc::Sender<()>,
}

/// The thread of [`forward_frames`], made before the save point (see
/// [`Streams`]) and given its work when the run starts.
pub(super) fn frame_forwarder() -> mpsc::Sender<Forward> {
    let (start, work) = mpsc::channel::<Forward>();
    resident(move || {
        if let Ok(forward) = work.recv() {
            forward_frames(forward);
        }
    });
    start
}

/// Runs `work` on a thread of its own and returns once that thread runs;
/// `work`'s result arrives on the receiver. Under emulation every kernel
/// path a restored guest takes is translated anew in every run, so:
/// - a resident thread made before the save point has done its start-up (its stack
///   and signal stack, the allocator's arena of its own) by the time the
///   guest is saved, not in each run;
/// - a resident thread never exits: once `work` returned (its captures dropped: a
///   pipe closed) it parks, sparing each run the unmapping of its stacks,
///   in a guest that powers off anyway.
pub(super) fn resident<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> mpsc::Receiver<T> {
    let (running, started) = mpsc::channel();
    let (result, done) = mpsc::channel();
    thread::spawn(move || {
        // The thread's first allocation makes its arena.
        drop(std::hint::black_box(Box::new(0u64)));
        let _ = running.send(());
        let _ = result.send(work());
        loop {
            thread::park();
        }
    });
    let _ = started.recv();
    done
}

/// Feeds frames from the host: stdin to [`write_stdin`], signals to the
/// binary, a new size to its terminal, which hangs up when the host's did
/// (its stdin ended); says when the host is done.
pub(super) fn forward_frames(forward: Forward) {
    let Forward {
        mut frames,
        stdin: tx,
        terminal,
        pid,
        done,
    } = forward;
    let mut tx = Some(tx);
    while let Ok(Some(frame)) = frames.next_frame() {
        match frame {
            Frame::Stdin(data) => {
                if let Some(tx) = &tx {
                    let _ = tx.send(data);
                }
            }
            Frame::StdinEof => {
                tx = None;
                if let Some((_, path)) = &terminal
                    && let Err(e) = pty::hang_up(path)
                {
                    log::error(&e.to_string());
                }
            }
            Frame::Done => {
                let _ = done.send(());
            }
            // Only before the run; a host that sends them later is
            // ignored.
            Frame::Resume(_) | Frame::Payload(_) => {}
            Frame::Resize(size) => {
                if let Some((master, _)) = &terminal
                    && let Err(e) = pty::resize(master, size)
                {
                    log::error(&e.to_string());
                }
            }
            // To the binary's process group: it and what it spawned.
            Frame::Signal(sig) => match pid.load(Ordering::SeqCst) {
                // Not started yet: nothing to deliver it to.
                0 => {}
                pid => {
                    let _ = process::signal_group(pid, i32::from(sig));
                }
            },
        }
    }
}
