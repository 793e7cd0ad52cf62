//! The default guest init of virtrun: sets the guest up, runs `/main` with
//! its streams connected to the host, reports how it ended and powers off.
//! In a standalone guest whose transport needs driver modules it is the
//! [`loader`] in front of the user's init instead.
//!
//! All building blocks come from `virtrun-sysinit`; all knowledge of the
//! host (channel roles, events, frames) from `virtrun-protocol`.

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::ffi::OsStringExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;
use virtrun_protocol::{
    BOOT_CONFIG_PATH, BootConfig, CONFIG_PATH, Event, Frame, GUEST_ENV, GuestConfig, GuestTimes,
    LOADER_CONFIG_PATH, MAIN_PATH, MODULES_DIR, RUN_DISK_SERIAL, TRANSPORT_MODULES_DIR, USER_NET,
};
use virtrun_sysinit::channel::{self, Channels, EventSender, FrameReader};
use virtrun_sysinit::process::{self, Exit};
use virtrun_sysinit::setup::{self, Setup};
use virtrun_sysinit::{INIT_FAILED, cpio, disk, fresh, fs, kmod, log, net, power, pty};

mod loader;
mod modprobe;
mod share;

/// How long to wait for the host to confirm it has all output. The host
/// answers as soon as it read everything; only a host that stopped reading
/// (its own output blocked) takes long.
const DONE_WAIT: Duration = Duration::from_secs(60);

fn main() {
    if let Some(module) = modprobe::requested() {
        modprobe::helper(&module);
    }
    virtrun_sysinit::exit_unless_pid1("virtrun-init");
    let init = process::monotonic_us();
    // SAFETY: the init is still single-threaded here. The environment is set
    // in place because `Command::envs` would sort the variables.
    unsafe {
        setup::clear_env();
        setup::set_envs(GUEST_ENV);
    }
    if std::path::Path::new(LOADER_CONFIG_PATH).exists() {
        loader::run();
    }
    if let Err(e) = run(init) {
        log::fatal(&e.to_string());
    }
    power::shutdown()
}

/// A failure before the control channel exists only reaches the kernel log.
///
/// The guest's life has one save point: boot as every run of this guest
/// identity does (the boot modules, the channels), then park. A snapshot is
/// taken there; a restored guest goes on from the same place. Everything
/// after it belongs to the run: fresh entropy and the clock, the run's
/// files (when they were not in the initramfs), its configuration, shares.
fn run(init: u64) -> virtrun_sysinit::Result<()> {
    setup::start()?;
    // The binary's working directory, set here once: a working directory
    // set for the spawn makes std fork the init instead of spawning with
    // vfork semantics, which costs ~20 ms under emulation.
    std::env::set_current_dir("/").map_err(|e| virtrun_sysinit::Error::new("chdir /", e))?;
    let boot =
        BootConfig::decode(&read_file(BOOT_CONFIG_PATH)?).map_err(invalid("decode boot config"))?;
    // Modules first: they may provide the very drivers the channels need.
    // The boot modules, then those of a cold run's initramfs (-addModule;
    // without a module tree they may be the transport's drivers). A failure
    // is reported once the control channel is open.
    let setup = Setup::new()
        .verbose(boot.verbose)
        .modules_dir(TRANSPORT_MODULES_DIR)
        .run()
        .and_then(|()| kmod::load_dir(Path::new(MODULES_DIR)).map(drop))
        .and_then(|()| if boot.user_net { user_net() } else { Ok(()) });
    let step = |what: &str| {
        if boot.verbose {
            log::info(what);
        }
    };
    share::mark_guest(Path::new("/"));
    let channels = Channels::open(boot.layout, channel::PORT_WAIT)?;
    step("channels open");
    // The module tree belongs to the guest's identity: mounted before the
    // save point. Without it (a damaged image in the cache, say) the run
    // goes on as without modules on demand; the log tells why.
    if boot.modules_on_demand && setup.is_ok() {
        match modprobe::mount_tree() {
            Ok(()) => {
                let nodes = modprobe::static_nodes();
                step(&format!("module tree mounted, {nodes} static device nodes"));
            }
            Err(e) => log::error(&format!("no modules on demand: {e}")),
        }
    }
    // The run's disk too, and the buffer the run is read into: found,
    // opened and made before the save point, used after it.
    let run_disk = boot
        .run_disk
        .then(|| disk::find(RUN_DISK_SERIAL, disk::DISK_WAIT).and_then(|d| disk::open_direct(&d)));
    let buffer = disk::buffer();
    let events = EventSender::new(clone(&channels.control)?);
    let mut frames = FrameReader::new(clone(&channels.control)?);
    let streams = streams(channels, &events)?;
    let config = setup
        .and_then(|()| receive_run(run_disk, buffer, &events, &mut frames, &step))
        .and_then(|()| read_config());
    let ready = config.and_then(|config| {
        share::mount(&config)?;
        step("shares mounted");
        enter_cwd(&config)?;
        Ok(config)
    });
    let (code, done) =
        match ready.and_then(|config| run_main(&config, streams, frames, &events, init)) {
            Ok((code, done)) => (code, Some(done)),
            Err(e) => {
                let _ = events.send(&Event::Error(e.to_string()));
                (INIT_FAILED, None)
            }
        };
    events
        .send(&Event::ExitCode(code))
        .map_err(|e| virtrun_sysinit::Error::new("send exit code", e))?;
    // Power off only once the host has all output: data written to a
    // virtio port may still be queued in the guest.
    if let Some(done) = done
        && done.recv_timeout(DONE_WAIT).is_err()
    {
        log::error("the host did not confirm the output; ending anyway");
    }
    Ok(())
}

/// The NIC on QEMU's user network, as a host on it is: its address, the
/// default route through the host, QEMU's resolver in `/etc/resolv.conf`
/// (which a -hostRoot guest's own `/etc` gets too, see [`share`]).
fn user_net() -> virtrun_sysinit::Result<()> {
    let nic = net::interfaces().into_iter().next().ok_or_else(|| {
        virtrun_sysinit::Error::new(
            "-net user",
            io::Error::new(io::ErrorKind::NotFound, "no network interface besides lo"),
        )
    })?;
    net::configure(
        &nic,
        USER_NET.address,
        USER_NET.prefix,
        Some(USER_NET.gateway),
    )?;
    let resolv = format!("nameserver {}\n", net::dotted(USER_NET.resolver));
    std::fs::write(RESOLV_CONF, resolv)
        .map_err(|e| virtrun_sysinit::Error::new(format!("write {RESOLV_CONF}"), e))
}

/// Where the resolver's address goes.
const RESOLV_CONF: &str = "/etc/resolv.conf";

fn read_file(path: &str) -> virtrun_sysinit::Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| virtrun_sysinit::Error::new(format!("read {path}"), e))
}

fn invalid(what: &'static str) -> impl Fn(virtrun_protocol::ConfigError) -> virtrun_sysinit::Error {
    move |e| virtrun_sysinit::Error::new(what, io::Error::new(io::ErrorKind::InvalidData, e))
}

/// Parks (the save point), then takes the host's entropy and clock and the
/// run's files: none when they were in the initramfs, an archive unpacked
/// into the root when this guest was booted for a snapshot.
fn receive_run(
    run_disk: Option<virtrun_sysinit::Result<File>>,
    buffer: Vec<u8>,
    events: &EventSender,
    frames: &mut FrameReader,
    step: &dyn Fn(&str),
) -> virtrun_sysinit::Result<()> {
    let lost = |what: &str| {
        virtrun_sysinit::Error::new(what, io::Error::from(io::ErrorKind::UnexpectedEof))
    };
    let unexpected = |what: &str, frame: Frame| {
        virtrun_sysinit::Error::new(
            what,
            io::Error::new(io::ErrorKind::InvalidData, format!("{frame:?}")),
        )
    };
    let control = |e| virtrun_sysinit::Error::new("read control", e);
    let pool = fresh::Pool::open()?;
    events
        .send(&Event::Parked)
        .map_err(|e| virtrun_sysinit::Error::new("send parked", e))?;
    match frames.next_frame().map_err(control)? {
        Some(Frame::Resume(resume)) => {
            fresh::apply(&pool, &resume)?;
            step("resumed: entropy and clock from the host");
        }
        Some(other) => return Err(unexpected("expected resume", other)),
        None => return Err(lost("wait for resume")),
    }
    events
        .send(&Event::Resumed)
        .map_err(|e| virtrun_sysinit::Error::new("send resumed", e))?;
    let len = match frames.next_frame().map_err(control)? {
        Some(Frame::Payload(len)) => len,
        Some(other) => return Err(unexpected("expected the run", other)),
        None => return Err(lost("wait for the run")),
    };
    if len == 0 {
        return Ok(());
    }
    // The buffer and the disk are kept, not freed or closed: under
    // emulation the guest's kernel would translate its unmap and release
    // paths anew in every restored run, for a guest about to end anyway.
    let paths = if let Some(disk) = run_disk {
        let mut payload = disk::ChunkReader::new(disk?, len, buffer);
        let paths = cpio::unpack(&mut payload, Path::new("/"))?;
        std::mem::forget(payload);
        paths
    } else {
        let mut payload = disk::ChunkReader::new(frames.payload(len), len, buffer);
        let paths = cpio::unpack(&mut payload, Path::new("/"))?;
        // Whatever follows the archive's trailer (padding) is part of it.
        io::copy(&mut payload, &mut io::sink()).map_err(control)?;
        paths
    };
    step(&format!("the run unpacked: {} entries", paths.len()));
    // The run's modules (-addModule), when it brought any.
    let modules = Path::new(MODULES_DIR);
    if paths.iter().any(|p| p.parent() == Some(modules)) {
        kmod::load_dir(modules)?;
    }
    Ok(())
}

/// The run's configuration, read and removed.
fn read_config() -> virtrun_sysinit::Result<GuestConfig> {
    let raw = read_file(CONFIG_PATH)?;
    fs::remove_if_exists(Path::new(CONFIG_PATH))?;
    let config = GuestConfig::decode(&raw).map_err(invalid("decode config"))?;
    if config.verbose {
        log::info("config read");
    }
    Ok(config)
}

/// The binary's environment: ours ([`GUEST_ENV`]) then the run's, a
/// variable set twice in the place of its first; a -hostRoot binary gets
/// the host's environment, nothing of ours.
fn binary_env(config: &GuestConfig) -> Vec<Vec<u8>> {
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

/// Moves to the binary's working directory (the spawn inherits it) and
/// creates the directories of its output files there, in its root.
fn enter_cwd(config: &GuestConfig) -> virtrun_sysinit::Result<()> {
    if !config.cwd.is_empty() {
        let cwd = Path::new(OsStr::from_bytes(&config.cwd));
        std::env::set_current_dir(cwd)
            .map_err(|e| virtrun_sysinit::Error::new(format!("chdir {}", cwd.display()), e))?;
    }
    prepare_outputs(&config.outputs);
    Ok(())
}

fn clone(file: &File) -> virtrun_sysinit::Result<File> {
    file.try_clone()
        .map_err(|e| virtrun_sysinit::Error::new("dup channel", e))
}

/// The binary's standard streams: pipes, the pumps from them to the
/// channels, the writer of its stdin, the forwarder of the host's frames.
/// Made before the save point: a thread or pipe made after it costs a
/// restored guest more than a booted one (see [`helper`]).
struct Streams {
    stdin_r: io::PipeReader,
    out_w: io::PipeWriter,
    err_w: io::PipeWriter,
    stdin: mpsc::Sender<Vec<u8>>,
    forwarder: mpsc::Sender<Forward>,
    pumps: [mpsc::Receiver<u64>; 2],
    out_port: File,
    err_port: File,
    oom_before: u64,
}

fn streams(channels: Channels, events: &EventSender) -> virtrun_sysinit::Result<Streams> {
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

/// Runs the binary with its streams on the channels; returns its exit code.
fn run_main(
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
struct Terminal {
    master: File,
    path: PathBuf,
    /// To [`write_stdin`] on the master.
    to_master: mpsc::Sender<Vec<u8>>,
}

fn open_terminal(
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
fn start_forwarding(
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
fn command(config: &GuestConfig) -> (&Path, Vec<OsString>) {
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

/// After the binary: its output files, then how it ended beyond its code
/// (out of memory, a signal).
fn report_end(config: &GuestConfig, events: &EventSender, exit: Exit, oom_before: u64) {
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

/// Creates the directories the binary writes its output files into: a
/// directory output itself, a file output's parent.
fn prepare_outputs(outputs: &[Vec<u8>]) {
    for path in outputs {
        let path = Path::new(OsStr::from_bytes(path));
        // go test's -test.gocoverdir and LLVM's profile directory are named
        // without a file; a file output has a numbered name.
        let dir = if path.extension().is_none() && !is_numbered(path) {
            path
        } else {
            path.parent().unwrap_or(Path::new("/"))
        };
        if let Err(e) = std::fs::create_dir_all(dir) {
            log::error(&format!("create {}: {e}", dir.display()));
        }
    }
}

fn is_numbered(path: &Path) -> bool {
    path.file_name()
        .and_then(OsStr::to_str)
        .is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit()))
}

/// Sends output `id` back: the file, or every file of the directory; one
/// that the binary did not write is not sent, so the host leaves its file
/// alone.
fn send_output(events: &EventSender, id: u32, path: &Path) {
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

/// Copies a pipe of the binary to its channel until end-of-file. A plain
/// read/write loop: `io::copy` would try `splice`, whose errors on some
/// devices end the copy. When the channel fails, the pipe is still drained,
/// so the binary never dies of a broken pipe that is not its own doing.
fn pump(mut from: impl io::Read + Send + 'static, mut to: File) -> mpsc::Receiver<u64> {
    helper(move || {
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
fn write_stdin(stdin: impl Write + Send + 'static, ack: EventSender) -> mpsc::Sender<Vec<u8>> {
    let (tx, rx) = mpsc::channel::<Vec<u8>>();
    helper(move || {
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
struct Forward {
    frames: FrameReader,
    /// To [`write_stdin`].
    stdin: mpsc::Sender<Vec<u8>>,
    /// With -tty: the master and the terminal's path.
    terminal: Option<(File, PathBuf)>,
    /// The binary, once started.
    pid: Arc<AtomicU32>,
    /// Told when the host has all output.
    done: mpsc::Sender<()>,
}

/// The thread of [`forward_frames`], made before the save point (see
/// [`Streams`]) and given its work when the run starts.
fn frame_forwarder() -> mpsc::Sender<Forward> {
    let (start, work) = mpsc::channel::<Forward>();
    helper(move || {
        if let Ok(forward) = work.recv() {
            forward_frames(forward);
        }
    });
    start
}

/// Runs `work` on a thread of its own and returns once that thread runs;
/// `work`'s result arrives on the receiver. Under emulation every kernel
/// path a restored guest takes is translated anew in every run, so:
/// - a helper made before the save point has done its start-up (its stack
///   and signal stack, the allocator's arena of its own) by the time the
///   guest is saved, not in each run;
/// - a helper never exits: once `work` returned (its captures dropped: a
///   pipe closed) it parks, sparing each run the unmapping of its stacks,
///   in a guest that powers off anyway.
fn helper<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> mpsc::Receiver<T> {
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
fn forward_frames(forward: Forward) {
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
