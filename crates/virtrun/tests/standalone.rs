//! `-standalone` end to end: the example init of `examples/standalone-init`,
//! built with `virtrun-sysinit`, boots as the guest's `/init` on the Debian
//! kernel, over the ISA UARTs and over virtio (pci: the host packs the virtio
//! modules, the library loads them and then finds its ports), and its exit
//! code becomes virtrun's.

mod common;

use common::virtrun;
use std::ffi::OsStr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

const TARGET: &str = "x86_64-unknown-linux-gnu";
/// A static binary: the guest has no libc of its own.
const STATIC: &str =
    r#"target.x86_64-unknown-linux-gnu.rustflags=["-Ctarget-feature=+crt-static"]"#;

/// How panics end in a build of the example.
#[derive(Debug, Clone, Copy)]
enum Panics {
    /// The dev profile: a panic unwinds and is caught.
    Unwind,
    /// The workspace's `guest` profile (`panic = "abort"`, LTO): the panic
    /// hook reports.
    Abort,
}

/// The example init, built once per test process into its own target
/// directory (so the build does not wait for the one running the tests).
fn example(panics: Panics) -> &'static Path {
    static UNWIND: OnceLock<PathBuf> = OnceLock::new();
    static ABORT: OnceLock<PathBuf> = OnceLock::new();
    let (built, profile, profile_dir) = match panics {
        Panics::Unwind => (&UNWIND, "dev", "debug"),
        Panics::Abort => (&ABORT, "guest", "guest"),
    };
    built.get_or_init(|| {
        let target_dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join("standalone")
            .join(profile_dir);
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let out = Command::new(&cargo)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            // Flags from the environment would replace the static one.
            .env_remove("RUSTFLAGS")
            .env_remove("CARGO_ENCODED_RUSTFLAGS")
            .args(["build", "--quiet", "--locked", "-p", "standalone-init"])
            .args(["--profile", profile, "--target", TARGET, "--config", STATIC])
            .arg("--target-dir")
            .arg(&target_dir)
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", cargo.display()));
        assert!(
            out.status.success(),
            "building the example init ({profile}) failed ({}):\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        target_dir
            .join(TARGET)
            .join(profile_dir)
            .join("standalone-init")
    })
}

/// A `virtrun -standalone` run of the example with `args`.
fn standalone(panics: Panics, args: &[&str]) -> common::Virtrun {
    virtrun([OsStr::new("-standalone"), example(panics).as_os_str()]).args(args)
}

const CLEANUPS: &str = "cleanup: second\ncleanup: first\n";

#[test]
fn exit_code_0_over_virtio() {
    standalone(Panics::Unwind, &["0"])
        .run()
        .assert_code(0)
        .assert_stdout(format!("hello from PID 1\n{CLEANUPS}").as_bytes());
}

#[test]
fn exit_code_42_and_arguments_over_virtio() {
    standalone(Panics::Unwind, &["42", "a b", "ü", "", "-x=1"])
        .run()
        .assert_code(42)
        .assert_stdout(
            format!("hello from PID 1\nword: a b\nword: ü\nword: \nword: -x=1\n{CLEANUPS}")
                .as_bytes(),
        );
}

#[test]
fn exit_code_0_over_isa() {
    standalone(Panics::Unwind, &["0"])
        .transport("isa")
        .run()
        .assert_code(0)
        .assert_stdout(format!("hello from PID 1\n{CLEANUPS}").as_bytes());
}

#[test]
fn exit_code_3_and_arguments_over_isa() {
    standalone(Panics::Unwind, &["3", "x"])
        .transport("isa")
        .run()
        .assert_code(3)
        .assert_stdout(format!("hello from PID 1\nword: x\n{CLEANUPS}").as_bytes());
}

#[test]
fn error_is_exit_code_1_with_its_message() {
    standalone(Panics::Unwind, &["fail"])
        .run()
        .assert_code(1)
        .assert_stdout(format!("hello from PID 1\n{CLEANUPS}").as_bytes())
        .assert_stderr_contains("error: asked to fail");
}

#[test]
fn panic_is_exit_code_101_and_cleanups_still_run() {
    standalone(Panics::Unwind, &["panic"])
        .run()
        .assert_code(101)
        .assert_stdout(format!("hello from PID 1\n{CLEANUPS}").as_bytes())
        .assert_stderr_contains("asked to panic");
}

#[test]
fn panic_abort_build_still_reports_101() {
    // The hook reports and powers off before the abort; cleanups cannot run.
    standalone(Panics::Abort, &["panic"])
        .run()
        .assert_code(101)
        .assert_stdout(b"hello from PID 1\n")
        .assert_stderr_contains("asked to panic");
}

#[test]
fn panic_abort_build_exit_code_over_isa() {
    standalone(Panics::Abort, &["7"])
        .transport("isa")
        .run()
        .assert_code(7)
        .assert_stdout(format!("hello from PID 1\n{CLEANUPS}").as_bytes());
}

#[test]
fn argument_the_kernel_cannot_pass_is_refused_before_boot() {
    let out = standalone(Panics::Unwind, &["0", "say \"hi\""]).run();
    out.assert_code(255);
    let line = out.assert_one_line();
    assert!(line.contains("say \\\"hi\\\""), "{line}");
}

/// `CAP_SYS_BOOT` from `linux/capability.h`.
const CAP_SYS_BOOT: libc::c_ulong = 22;

#[test]
fn refuses_to_run_unless_pid_1() {
    let mut cmd = Command::new(example(Panics::Unwind));
    cmd.arg("0");
    // Without CAP_SYS_BOOT, so that not even a bug could reboot this host.
    // SAFETY: the closure only calls prctl(2) and geteuid(2), which are
    // async-signal-safe, and touches no memory.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_CAPBSET_DROP, CAP_SYS_BOOT, 0, 0, 0) < 0 && libc::geteuid() == 0
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let out = cmd.output().unwrap();
    assert_eq!(out.status.code(), Some(255), "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "standalone-init: must run as PID 1\n"
    );
    assert!(out.stdout.is_empty(), "{out:?}");
}
