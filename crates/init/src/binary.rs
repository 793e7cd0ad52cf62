//! The binary: started as a job (or on its terminal under -tty) with its
//! streams on the channels, waited for, its output files and how it ended
//! reported.

use super::*;
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::ffi::OsStringExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc;
use std::thread;
use virtrun_protocol::{Event, GUEST_ENV, GuestConfig, GuestTimes, MAIN_PATH};
use virtrun_sysinit::channel::{self, EventSender, FrameReader};
use virtrun_sysinit::process::{self, Exit};
use virtrun_sysinit::{log, pty};

/// Runs the binary with its streams on the channels; returns its exit code.
pub(super) fn run_main(
    config: &GuestConfig,
    streams: Streams,
    frames: FrameReader,
    events: &EventSender,
    init: u64,
) -> virtrun_sysinit::Result<(i32, mpsc::Receiver<()>)> {
    let Streams {
        stdin_r,
        out_w,
        err_w,
        stdin,
        forwarder,
        pumps,
        out_port,
        err_port,
        oom_before,
    } = streams;
    let terminal = open_terminal(config, events)?;
    let (pid_slot, done) = start_forwarding(frames, forwarder, stdin, terminal.as_ref())?;
    let _ = events.send(&Event::Ready);
    let (exec, argv) = command(config);
    let env = binary_env(config);
    // A job of PID 1's session, as a test binary under a harness on a
    // host; with -tty a session leader on its terminal, as a login shell.
    let (spawned, tty_pump) = match terminal {
        Some(Terminal { master, path, .. }) => {
            let spawned = process::spawn_on_terminal(exec, &argv, &env, &path);
            (spawned, Some(pump(master, clone(&out_port)?)))
        }
        None => (
            process::spawn_job(exec, &argv, &env, [&stdin_r, &out_w, &err_w]),
            None,
        ),
    };
    // Our copies of the binary's pipe ends: the pumps see end-of-file only
    // once they are gone.
    drop((stdin_r, out_w, err_w));
    let started = process::monotonic_us();
    let pid =
        spawned.map_err(|e| virtrun_sysinit::Error::new(format!("exec {}", exec.display()), e))?;
    pid_slot.store(pid, Ordering::SeqCst);
    let _ = events.send(&Event::Started);

    let exit = process::reap(pid).map_err(|e| virtrun_sysinit::Error::new("wait for /main", e))?;
    let exited = process::monotonic_us();
    // Whatever the binary left running would keep its pipes open; the guest
    // is about to end anyway.
    process::kill_all();
    let [mut stdout, stderr] = pumps.map(|p| p.recv().unwrap_or(0));
    // A terminal's master reads end (EIO) once the binary and all it left
    // closed the terminal: killed above.
    stdout += tty_pump.map_or(0, |p| p.recv().unwrap_or(0));
    channel::drain(&out_port);
    channel::drain(&err_port);
    let _ = events.send(&Event::Streams { stdout, stderr });
    report_end(config, events, exit, oom_before);
    let _ = events.send(&Event::Times(GuestTimes {
        init,
        started,
        exited,
        reported: process::monotonic_us(),
    }));
    Ok((exit.code(), done))
}

/// Under -tty, the binary's terminal: its master takes stdin and gives the
/// output (the pipes made before the save point go unused).
pub(super) struct Terminal {
    pub(super) master: File,
    pub(super) path: PathBuf,
    /// To [`write_stdin`] on the master.
    pub(super) to_master: mpsc::Sender<Vec<u8>>,
}

pub(super) fn open_terminal(
    config: &GuestConfig,
    events: &EventSender,
) -> virtrun_sysinit::Result<Option<Terminal>> {
    let Some(size) = config.tty else {
        return Ok(None);
    };
    let (master, path) = pty::open(size)?;
    let to_master = write_stdin(clone(&master)?, events.clone());
    Ok(Some(Terminal {
        master,
        path,
        to_master,
    }))
}

/// Hands the host's frames to the forwarder: stdin is accepted before the
/// binary exists, so the host can start sending while the binary starts
/// up. Returns where the binary's pid goes once it runs, and what says
/// that the host has all output.
pub(super) fn start_forwarding(
    frames: FrameReader,
    forwarder: mpsc::Sender<Forward>,
    stdin: mpsc::Sender<Vec<u8>>,
    terminal: Option<&Terminal>,
) -> virtrun_sysinit::Result<(Arc<AtomicU32>, mpsc::Receiver<()>)> {
    let (done_tx, done_rx) = mpsc::channel();
    let (stdin, resize) = match terminal {
        Some(t) => (
            t.to_master.clone(),
            Some((clone(&t.master)?, t.path.clone())),
        ),
        None => (stdin, None),
    };
    let pid_slot = Arc::new(AtomicU32::new(0));
    let forward = Forward {
        frames,
        stdin,
        terminal: resize,
        pid: Arc::clone(&pid_slot),
        done: done_tx,
    };
    if let Err(mpsc::SendError(forward)) = forwarder.send(forward) {
        thread::spawn(move || forward_frames(forward));
    }
    Ok((pid_slot, done_rx))
}

/// The binary's path and its argv (`argv[0]` included).
pub(super) fn command(config: &GuestConfig) -> (&Path, Vec<OsString>) {
    let argv0 = if config.argv0.is_empty() {
        OsString::from(MAIN_PATH)
    } else {
        OsString::from_vec(config.argv0.clone())
    };
    let argv = std::iter::once(argv0)
        .chain(config.args.iter().map(|a| OsString::from_vec(a.clone())))
        .collect();
    let exec = if config.exec.is_empty() {
        Path::new(MAIN_PATH)
    } else {
        Path::new(OsStr::from_bytes(&config.exec))
    };
    (exec, argv)
}

/// The binary's environment: ours ([`GUEST_ENV`]) then the run's, a
/// variable set twice in the place of its first; a -hostRoot binary gets
/// the host's environment, nothing of ours.
pub(super) fn binary_env(config: &GuestConfig) -> Vec<Vec<u8>> {
    let mut env: Vec<(Vec<u8>, Vec<u8>)> = if config.host_root {
        Vec::new()
    } else {
        GUEST_ENV
            .iter()
            .map(|(k, v)| (k.as_bytes().to_vec(), v.as_bytes().to_vec()))
            .collect()
    };
    for var in &config.env {
        let Some(i) = var.iter().position(|&b| b == b'=') else {
            continue;
        };
        let (key, value) = (&var[..i], &var[i + 1..]);
        match env.iter_mut().find(|(k, _)| k == key) {
            Some(slot) => slot.1 = value.to_vec(),
            None => env.push((key.to_vec(), value.to_vec())),
        }
    }
    env.into_iter()
        .map(|(mut k, v)| {
            k.push(b'=');
            k.extend(v);
            k
        })
        .collect()
}

/// After the binary: its output files, then how it ended beyond its code
/// (out of memory, a signal).
pub(super) fn report_end(config: &GuestConfig, events: &EventSender, exit: Exit, oom_before: u64) {
    for (id, path) in config.outputs.iter().enumerate() {
        send_output(events, id as u32, Path::new(OsStr::from_bytes(path)));
    }
    if process::oom_kills() > oom_before {
        let _ = events.send(&Event::OutOfMemory);
    }
    if let Exit::Signal(sig) = exit {
        let _ = events.send(&Event::Signaled(sig));
    }
}

/// Sends output `id` back: the file, or every file of the directory; one
/// that the binary did not write is not sent, so the host leaves its file
/// alone.
pub(super) fn send_output(events: &EventSender, id: u32, path: &Path) {
    let files: Vec<(String, PathBuf)> = match std::fs::read_dir(path) {
        Ok(entries) => entries
            .flatten()
            .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
            .map(|e| (e.file_name().to_string_lossy().into_owned(), e.path()))
            .collect(),
        Err(_) if path.is_file() => vec![(String::new(), path.to_path_buf())],
        Err(_) => Vec::new(),
    };
    for (name, file) in files {
        // The name travels in the event's line.
        if name.contains('\n') {
            log::error(&format!(
                "not sent: {}: a newline in its name",
                file.display()
            ));
            continue;
        }
        if let Err(e) = events.send_file(id, &name, &file) {
            log::error(&format!("send {}: {e}", file.display()));
        }
    }
}
