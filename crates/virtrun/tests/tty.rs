//! `-tty`: the binary runs on a terminal in the guest, driven here through a
//! real pseudo-terminal whose controlling process virtrun is, as in a
//! terminal emulator: raw mode while it runs and the old mode after, the
//! window size at the start and on a resize, Ctrl-C reaching the guest's
//! foreground process group, a shell on the host's userland with
//! `-hostRoot`.

mod common;

use common::KillOnDrop;
use common::{kernel, kernel_of, payload, virtrun};
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A pseudo-terminal: the test types into and reads from `master`;
/// virtrun gets the terminal as its stdin, stdout, stderr and controlling
/// terminal.
struct Terminal {
    master: File,
    tty: OwnedFd,
    output: Arc<Mutex<Vec<u8>>>,
    /// Tells the reader to let go of its master.
    closing: Arc<AtomicBool>,
    reader: Option<std::thread::JoinHandle<()>>,
}

fn winsize(rows: u16, cols: u16) -> libc::winsize {
    libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    }
}

impl Terminal {
    fn new(rows: u16, cols: u16) -> Terminal {
        let (mut master, mut tty) = (0, 0);
        let ws = winsize(rows, cols);
        // SAFETY: openpty writes two fds; the name and termios are optional.
        let ret = unsafe {
            libc::openpty(
                &mut master,
                &mut tty,
                std::ptr::null_mut(),
                std::ptr::null(),
                &ws,
            )
        };
        assert_eq!(ret, 0, "openpty: {}", std::io::Error::last_os_error());
        // Only the emulator has the master, as in a terminal emulator: a
        // child that kept it would keep the terminal from ever hanging up.
        for fd in [master, tty] {
            // SAFETY: fcntl on fds we just opened.
            let ret = unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
            assert_eq!(ret, 0);
        }
        // SAFETY: both fds were just opened and are ours alone.
        let (master, tty) = unsafe { (File::from_raw_fd(master), OwnedFd::from_raw_fd(tty)) };
        let output = Arc::new(Mutex::new(Vec::new()));
        let mut from = master.try_clone().unwrap();
        let sink = Arc::clone(&output);
        let closing = Arc::new(AtomicBool::new(false));
        let stop = Arc::clone(&closing);
        let reader = std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while !stop.load(Ordering::SeqCst) {
                let mut pfd = libc::pollfd {
                    fd: from.as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                };
                // SAFETY: one valid pollfd.
                if unsafe { libc::poll(&mut pfd, 1, 20) } <= 0 {
                    continue;
                }
                // Ends with EIO once no process has the terminal open.
                match from.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => sink.lock().unwrap().extend_from_slice(&buf[..n]),
                }
            }
        });
        Terminal {
            master,
            tty,
            output,
            closing,
            reader: Some(reader),
        }
    }

    /// Starts virtrun with `args` on this terminal, as a terminal emulator
    /// starts a shell: a new session whose controlling terminal it is.
    fn spawn(&self, args: &[&std::ffi::OsStr]) -> KillOnDrop {
        let io = || Stdio::from(self.tty.try_clone().unwrap());
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_virtrun"));
        cmd.args(args).stdin(io()).stdout(io()).stderr(io());
        // SAFETY: only async-signal-safe calls between fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                if libc::setsid() < 0 || libc::ioctl(0, libc::TIOCSCTTY, 0) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        KillOnDrop(cmd.spawn().unwrap())
    }

    /// Closes the terminal's master, as a terminal emulator whose window
    /// closed: the terminal hangs up.
    fn hang_up(mut self) -> OwnedFd {
        self.closing.store(true, Ordering::SeqCst);
        if let Some(reader) = self.reader.take() {
            reader.join().unwrap();
        }
        self.tty
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.output.lock().unwrap()).into_owned()
    }

    /// Waits until the terminal showed `needle`.
    #[track_caller]
    fn wait_for(&self, needle: &str) {
        self.wait_until(needle, |text| text.contains(needle));
    }

    /// Waits until the terminal showed `line` as a line of its own: after
    /// a newline or a carriage return (a shell's prompt may end in control
    /// sequences and `\r`), not after the command that printed it.
    #[track_caller]
    fn wait_for_line(&self, line: &str) {
        self.wait_until(line, |text| {
            text.contains(&format!("\n{line}\r\n")) || text.contains(&format!("\r{line}\r\n"))
        });
    }

    /// Waits until the guest has the keyboard: the terminal in raw mode.
    #[track_caller]
    fn wait_for_raw_mode(&self) {
        self.wait_until("raw mode", |_| self.mode()[3] & libc::ICANON == 0);
    }

    #[track_caller]
    fn wait_until(&self, what: &str, done: impl Fn(&str) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(120);
        while !done(&self.text()) {
            assert!(
                Instant::now() < deadline,
                "no {what:?} on the terminal; it shows {:?}",
                self.text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn type_in(&self, keys: &[u8]) {
        (&self.master).write_all(keys).unwrap();
    }

    fn resize(&self, rows: u16, cols: u16) {
        let ws = winsize(rows, cols);
        // SAFETY: TIOCSWINSZ reads one winsize; the terminal's foreground
        // process group (virtrun) gets SIGWINCH.
        let ret = unsafe { libc::ioctl(self.master.as_raw_fd(), libc::TIOCSWINSZ, &ws) };
        assert_eq!(ret, 0);
    }

    /// The terminal's mode: input, output, control and local flags.
    fn mode(&self) -> [libc::tcflag_t; 4] {
        // SAFETY: termios is plain old data that tcgetattr fills.
        let mut t: libc::termios = unsafe { std::mem::zeroed() };
        // SAFETY: a valid fd and pointer.
        assert_eq!(unsafe { libc::tcgetattr(self.tty.as_raw_fd(), &mut t) }, 0);
        [t.c_iflag, t.c_oflag, t.c_cflag, t.c_lflag]
    }
}

/// virtrun -tty with `tests/payloads/tty.c` on `term`, once the payload
/// said it is ready.
fn start_payload(term: &Terminal) -> KillOnDrop {
    let k = kernel();
    let tty = payload("tty");
    let child = term.spawn(&[
        "-nokvm".as_ref(),
        "-kernel".as_ref(),
        k.as_os_str(),
        "-tty".as_ref(),
        tty.as_os_str(),
    ]);
    term.wait_for("ready\r\n");
    child
}

/// Waits for virtrun's exit code, killing it after the suite's time limit.
#[track_caller]
fn exit_code(mut child: KillOnDrop, term: &Terminal) -> i32 {
    let deadline = Instant::now() + common::TIMEOUT;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status.code().expect("virtrun died of a signal");
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("virtrun did not end; the terminal shows {:?}", term.text());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_static_binary_on_a_terminal_sees_size_resize_keys_and_ctrl_c() {
    let term = Terminal::new(24, 80);
    let cooked = term.mode();
    let child = start_payload(&term);
    // Raw mode while the guest has the keyboard.
    assert_eq!(term.mode()[3] & (libc::ICANON | libc::ECHO | libc::ISIG), 0);
    term.resize(30, 100);
    term.wait_for("resized: 30 rows 100 cols\r\n");
    term.type_in(b"hello\r");
    term.wait_for("line: hello\r\n");
    // Ctrl-C: the guest's terminal signals its foreground process group.
    term.type_in(b"\x03");
    let code = exit_code(child, &term);
    let text = term.text();
    assert_eq!(code, 130, "{text:?}");
    assert!(
        text.starts_with(
            "terminal: 1 1 1, foreground: 1\r\nsize: 24 rows 80 cols\r\nready\r\n\
             resized: 30 rows 100 cols\r\nhello\r\nline: hello\r\n^C"
        ),
        "{text:?}"
    );
    assert_eq!(term.mode(), cooked, "the terminal's mode was not restored");
}

#[test]
fn a_shell_on_the_hosts_userland() {
    let term = Terminal::new(24, 80);
    let cooked = term.mode();
    let k = kernel_of("amd64-generic");
    let child = term.spawn(&[
        "-nokvm".as_ref(),
        "-kernel".as_ref(),
        k.as_os_str(),
        "-hostRoot".as_ref(),
        "-tty".as_ref(),
        "/bin/bash".as_ref(),
    ]);
    // Keys typed before would be echoed by the host's terminal too.
    term.wait_for_raw_mode();
    term.type_in(b"echo hi\r");
    // The command's output, not the echo of the command line.
    term.wait_for_line("hi");
    term.type_in(b"stty size\r");
    term.wait_for_line("24 80");
    // Ctrl-Z stops the foreground job, as on any terminal.
    term.type_in(b"sleep 60; echo slept\r");
    std::thread::sleep(Duration::from_secs(3));
    term.type_in(b"\x1a");
    term.wait_for("Stopped");
    term.type_in(b"kill -9 %1\r");
    term.wait_for("Killed");
    term.type_in(b"exit 3\r");
    assert_eq!(exit_code(child, &term), 3, "{:?}", term.text());
    assert_eq!(term.mode(), cooked, "the terminal's mode was not restored");
}

/// virtrun ended by a signal from outside (the first one goes to the
/// binary) leaves the terminal as it found it.
#[test]
fn the_terminal_mode_comes_back_after_a_signal() {
    let term = Terminal::new(24, 80);
    let cooked = term.mode();
    let child = start_payload(&term);
    assert_ne!(term.mode(), cooked);
    // SAFETY: kill(2) on our own child, not yet reaped.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGTERM) }, 0);
    assert_eq!(exit_code(child, &term), 143, "{:?}", term.text());
    assert_eq!(term.mode(), cooked, "the terminal's mode was not restored");
}

/// The terminal going away (its window closed) hangs up the binary's
/// terminal in the guest too: the run ends, as a shell's on a closed
/// terminal does, instead of waiting for keys that never come.
#[test]
fn a_terminal_that_hangs_up_ends_the_run() {
    let term = Terminal::new(24, 80);
    let mut child = start_payload(&term);
    let _tty = term.hang_up();
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("virtrun did not end after its terminal hung up");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    // SIGHUP: the binary's, passed on as virtrun's exit code.
    assert_eq!(status.code(), Some(129), "{status:?}");
}

#[test]
fn tty_without_a_terminal_is_one_line_and_255() {
    let out = virtrun(["-tty", "/usr/bin/true"]).run();
    out.assert_code(255);
    assert_eq!(
        out.assert_one_line(),
        "virtrun: error: -tty: stdin is not a terminal (run virtrun -tty from one, or drop -tty)\n"
    );
}
