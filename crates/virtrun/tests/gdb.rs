//! `-gdb PORT`: QEMU's gdb server for the guest kernel on the loopback, the
//! guest held until gdb lets it run, deadlines counted from then. Real gdb
//! attaches in batch mode.

mod common;

use common::KillOnDrop;
use common::{kernel, payload, virtrun};
use std::io::{BufRead, BufReader, Read};
use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// A loopback port that was free a moment ago.
fn free_port() -> u16 {
    TcpListener::bind(("127.0.0.1", 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// virtrun under `-gdb port` with `args`, and its stderr as it comes, line by
/// line.
fn held(port: u16, args: &[&str]) -> (KillOnDrop, mpsc::Receiver<String>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_virtrun"))
        .args(["-nokvm", "-gdb", &port.to_string(), "-kernel"])
        .arg(kernel())
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = mpsc::channel();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    (KillOnDrop(child), rx)
}

/// Waits for the line that says the guest waits, and returns everything
/// virtrun printed up to the attach command.
fn waiting(lines: &mpsc::Receiver<String>, port: u16) -> String {
    let first = lines.recv_timeout(Duration::from_secs(60)).unwrap();
    assert_eq!(
        first,
        format!(
            "virtrun: the guest kernel waits for gdb on 127.0.0.1:{port} (nokaslr); attach with:"
        )
    );
    let attach = lines.recv_timeout(Duration::from_secs(5)).unwrap();
    assert!(
        attach.starts_with(&format!(
            "  gdb -ex 'target remote 127.0.0.1:{port}' /usr/lib/debug/boot/vmlinux-"
        )),
        "{attach}"
    );
    attach
}

/// gdb in batch mode: attach, then `commands`.
fn gdb(port: u16, commands: &[&str]) -> String {
    let mut cmd = Command::new("gdb");
    cmd.args([
        "-nx",
        "-batch",
        "-ex",
        &format!("target remote 127.0.0.1:{port}"),
    ]);
    for c in commands {
        cmd.args(["-ex", c]);
    }
    let out = cmd.output().expect("gdb (installed by scripts/setup)");
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}

fn finish(mut child: KillOnDrop) -> (i32, Vec<u8>) {
    let mut stdout = Vec::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_end(&mut stdout)
        .unwrap();
    let status = child.wait().unwrap();
    (status.code().expect("virtrun died of a signal"), stdout)
}

#[test]
fn gdb_reads_a_register_and_continues_to_a_normal_exit() {
    let port = free_port();
    let (child, lines) = held(port, &["/bin/echo", "hello,", "gdb"]);
    waiting(&lines, port);
    // Held at the reset vector: nothing ran yet.
    let out = gdb(port, &["info registers rip", "continue"]);
    assert!(out.contains("rip            0xfff0"), "{out}");
    let (code, stdout) = finish(child);
    assert_eq!(code, 0);
    assert_eq!(String::from_utf8_lossy(&stdout), "hello, gdb\n");
}

/// The deadline counts from when gdb lets the guest run: a guest held longer
/// than `-timeout` still runs to its end.
#[test]
fn the_timeout_starts_when_gdb_lets_the_guest_run() {
    let port = free_port();
    let exit = payload("exit");
    let (child, lines) = held(port, &["-timeout", "15s", exit.to_str().unwrap(), "7"]);
    waiting(&lines, port);
    std::thread::sleep(Duration::from_secs(16));
    gdb(port, &["continue"]);
    let (code, _) = finish(child);
    assert_eq!(code, 7);
}

#[test]
fn a_port_in_use_is_one_line_and_255() {
    let taken = TcpListener::bind(("127.0.0.1", 0)).unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let out = virtrun(["-gdb", &port, "/usr/bin/true"]).run();
    out.assert_code(255);
    let line = out.assert_one_line();
    assert!(
        line.starts_with(&format!(
            "virtrun: error: -gdb: cannot listen on 127.0.0.1:{port}: Address"
        )),
        "{line}"
    );
    // Not a port.
    let out = virtrun(["-gdb", "65536", "/usr/bin/true"]).run();
    out.assert_code(255);
    assert!(
        out.stderr_text().starts_with("virtrun: error: "),
        "{}",
        out.stderr_text()
    );
}
