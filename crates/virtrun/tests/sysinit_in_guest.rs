//! The `virtrun-sysinit` library checked where it runs: inside a guest, as
//! PID 1 of `virtrun -standalone` (the counterpart of the original running
//! its sysinit tests under `go test -exec "virtrun -standalone"`).
//!
//! Without a test harness: on the host this binary boots itself as the
//! init of a guest and checks what it reports; in the guest (as PID 1) it
//! sets the system up with the library and checks the result from inside.

mod common;

use std::net::{TcpListener, UdpSocket};
use std::path::Path;
use std::process::Command;
use virtrun_protocol::GUEST_ENV;
use virtrun_sysinit::{BoxError, Init, is_pid1};

/// Set on the host to run this binary as an init that is not PID 1.
const NOT_PID1: &str = "VIRTRUN_SYSINIT_NOT_PID1";

fn main() {
    if is_pid1() {
        in_guest();
    }
    if std::env::var_os(NOT_PID1).is_some() {
        Init::new().name("sysinit-check").run(|_| Ok(0));
    }
    on_host();
}

/// The checks, as PID 1; each prints `ok: …` or `FAIL: …`, and the exit
/// code is the number of failures.
fn in_guest() -> ! {
    Init::new()
        .name("sysinit-check")
        .run(|_ctx| -> Result<i32, BoxError> {
            let mut failed = 0;
            let mut check = |what: &str, ok: bool| {
                println!("{}: {what}", if ok { "ok" } else { "FAIL" });
                failed += i32::from(!ok);
            };
            let mounts = std::fs::read_to_string("/proc/mounts")?;
            for (fstype, target) in [
                ("devtmpfs", "/dev"),
                ("proc", "/proc"),
                ("sysfs", "/sys"),
                ("devpts", "/dev/pts"),
                ("mqueue", "/dev/mqueue"),
                ("cgroup2", "/sys/fs/cgroup"),
                ("bpf", "/sys/fs/bpf"),
                ("tracefs", "/sys/kernel/tracing"),
            ] {
                let found = mounts.lines().any(|l| {
                    let f: Vec<&str> = l.split(' ').collect();
                    f.get(1) == Some(&target) && f.get(2) == Some(&fstype)
                });
                check(&format!("{fstype} mounted on {target}"), found);
            }
            let flags = std::fs::read_to_string("/sys/class/net/lo/flags")?;
            let flags = u32::from_str_radix(flags.trim().trim_start_matches("0x"), 16)?;
            check("lo is up", flags & 1 == 1);
            check(
                "127.0.0.1 is assigned",
                TcpListener::bind("127.0.0.1:0").is_ok(),
            );
            check("::1 is assigned", UdpSocket::bind("[::1]:0").is_ok());
            let modules = std::fs::read_to_string("/proc/modules")?;
            check(
                "the dummy module is loaded",
                modules.lines().any(|l| l.starts_with("dummy ")),
            );
            for (link, target) in [
                ("/dev/fd", "/proc/self/fd"),
                ("/dev/stdin", "/proc/self/fd/0"),
                ("/dev/stdout", "/proc/self/fd/1"),
                ("/dev/stderr", "/proc/self/fd/2"),
            ] {
                let got = std::fs::read_link(link).ok();
                check(
                    &format!("{link} -> {target}"),
                    got.as_deref() == Some(Path::new(target)),
                );
            }
            let env: Vec<(String, String)> = std::env::vars().collect();
            let want: Vec<(String, String)> = GUEST_ENV
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            check(
                &format!("environment is exactly {want:?} (got {env:?})"),
                env == want,
            );
            Ok(failed)
        })
}

fn on_host() {
    let me = std::env::current_exe().unwrap();
    let mut passed = 0;

    // Not PID 1: a clear refusal, nothing touched.
    let refused = Command::new(&me).env(NOT_PID1, "1").output().unwrap();
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(255), "stderr: {stderr}");
    assert!(stderr.contains("must run as PID 1"), "stderr: {stderr}");
    passed += 1;

    // As the init of a guest, with a module from the kernel's tree.
    let out = common::virtrun(["-standalone", "-addModule", "dummy"])
        .args([&me])
        .run();
    let report = out.stdout_text();
    print!("{report}");
    out.assert_code(0);
    assert!(
        report.lines().count() == 17 && report.lines().all(|l| l.starts_with("ok: ")),
        "{report}"
    );
    passed += 1;
    println!("{passed} passed, 0 failed");
}
