//! `-standalone` end to end: the example init of `examples/standalone-init`,
//! built with `virtrun-sysinit`, boots as the guest's `/init` on the Debian
//! kernel, over the ISA UARTs and over virtio (pci: the host packs the virtio
//! modules, the library loads them and then finds its ports), and on arm64
//! over virtio-mmio; its exit code becomes virtrun's, and go test's file
//! flags land in host files.

mod common;

use common::{kernel_of, virtrun, virtrun_bare};
use std::ffi::OsStr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

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

/// The example init built for aarch64 the way `scripts/build-guest-init`
/// builds the embedded ones: Debian's Rust rebuilding std for the target
/// (`-Zbuild-std`) and its cross gcc linking (both from `scripts/setup`).
fn arm64_example() -> &'static Path {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT.get_or_init(|| {
        let target = "aarch64-unknown-linux-gnu";
        let target_dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("standalone-cross");
        let out = Command::new("/usr/bin/cargo")
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .env_remove("RUSTFLAGS")
            .env_remove("CARGO_BUILD_RUSTFLAGS")
            .env_remove("CARGO_ENCODED_RUSTFLAGS")
            .env_remove("RUSTUP_TOOLCHAIN")
            .env_remove("CARGO")
            .env("RUSTC_BOOTSTRAP", "1")
            .env("RUSTC", "/usr/bin/rustc")
            .env("RUSTDOC", "/usr/bin/rustdoc")
            .args(["build", "--quiet", "--locked", "-p", "standalone-init"])
            .args(["--profile", "guest", "-Zbuild-std=std,panic_abort"])
            .args(["--target", target, "--target-dir"])
            .arg(&target_dir)
            .args([
                "--config",
                &format!("target.{target}.linker=\"aarch64-linux-gnu-gcc\""),
            ])
            .args([
                "--config",
                &format!("target.{target}.rustflags=[\"-Ctarget-feature=+crt-static\"]"),
            ])
            .output()
            .unwrap_or_else(|e| panic!("cannot run /usr/bin/cargo (run scripts/setup): {e}"));
        assert!(
            out.status.success(),
            "building the example init for {target} failed ({}):\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        target_dir
            .join(target)
            .join("guest")
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

/// What the example writes for `-test.NAME=PATH` (its `file_content`).
fn file_content(name: &str) -> Vec<u8> {
    let mut content = format!("{name}\n\r\n\r\r\n").into_bytes();
    content.extend((0..=255u8).cycle().take(256 * 256));
    content
}

/// go test's file flags in standalone mode (docs/reference.md#channels):
/// virtrun points them at ports 2, 3, … in argument order, the init links those
/// to `/dev/virtrunN`, and what it writes there lands byte for byte in the host
/// files the flags named (relative ones in virtrun's working directory),
/// created only now. `files` flags are given; `transport` carries them.
fn go_test_files_reach_the_host(transport: &'static str, files: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    let untouched = dir.path().join("never.out");
    std::fs::write(&untouched, "kept\n").unwrap();
    let mut args = vec!["5".to_owned()];
    let mut expected = Vec::new();
    for (i, name) in files.iter().enumerate() {
        // The first file is relative; the others absolute, one in a
        // directory that does not exist yet.
        let path = match i {
            0 => PathBuf::from(format!("{name}.out")),
            1 => dir.path().join("sub/dir").join(format!("{name}.out")),
            _ => dir.path().join(format!("{name}.out")),
        };
        args.push(format!("-test.{name}={}", path.display()));
        expected.push((dir.path().join(&path), file_content(name)));
    }
    args.push("last".to_owned());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    standalone(Panics::Unwind, &args)
        .transport(transport)
        .cwd(dir.path())
        .run()
        .assert_code(5)
        .assert_stdout(format!("hello from PID 1\nword: last\n{CLEANUPS}").as_bytes());
    for (path, content) in expected {
        let got = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert!(
            got == content,
            "{}: {} bytes differ from the {} written",
            path.display(),
            got.len(),
            content.len()
        );
    }
    assert_eq!(std::fs::read(&untouched).unwrap(), b"kept\n");
}

#[test]
fn go_test_files_over_virtio_ports() {
    go_test_files_reach_the_host(
        "pci",
        &[
            "coverprofile",
            "cpuprofile",
            "memprofile",
            "blockprofile",
            "mutexprofile",
            "trace",
        ],
    );
}

#[test]
fn go_test_files_over_uarts() {
    go_test_files_reach_the_host("isa", &["coverprofile", "trace"]);
}

/// The example's `bulk` output (its `bulk_line`s).
fn bulk() -> Vec<u8> {
    (0..4096u32)
        .flat_map(|i| {
            let mut line = format!("{i:08} ").into_bytes();
            line.resize(1023, b'a' + (i % 26) as u8);
            line.push(b'\n');
            line
        })
        .collect()
}

/// A virtio console drops what its host end does not take at once; virtrun's
/// end never refuses, so 4 MiB reach a consumer that stalls for 8 s (the
/// boot and then some) intact.
#[test]
fn stdout_over_virtio_survives_a_stalled_consumer() {
    let mut expected = b"hello from PID 1\n".to_vec();
    expected.extend(bulk());
    expected.extend(CLEANUPS.as_bytes());
    standalone(Panics::Unwind, &["0", "bulk"])
        .stdout_stall(Duration::from_secs(8))
        .run()
        .assert_code(0)
        .assert_stdout(&expected);
}

#[test]
fn more_files_than_uarts_is_refused_before_boot() {
    let out = standalone(
        Panics::Unwind,
        &[
            "0",
            "-test.coverprofile=a",
            "-test.cpuprofile=b",
            "-test.trace=c",
        ],
    )
    .transport("isa")
    .run();
    out.assert_code(255);
    assert_eq!(
        out.assert_one_line().trim_end(),
        "virtrun: error: -standalone: go test asks for 3 output files, but -transport isa \
         carries at most 2: use -transport pci"
    );
}

/// The library on arm64: the kernel console is the PL011 (`ttyAMA0`), the
/// virtio modules for mmio come from the kernel's tree and are loaded by the
/// init, which then finds its ports; a go test file flag comes back too.
#[test]
fn arm64_standalone_over_virtio_mmio() {
    let dir = tempfile::tempdir().unwrap();
    virtrun_bare([
        OsStr::new("-nokvm"),
        OsStr::new("-kernel"),
        kernel_of("arm64").as_os_str(),
        OsStr::new("-standalone"),
        arm64_example().as_os_str(),
    ])
    .args(["3", "a b", "-test.coverprofile=c.out"])
    .cwd(dir.path())
    .run()
    .assert_code(3)
    .assert_stdout(format!("hello from PID 1\nword: a b\n{CLEANUPS}").as_bytes());
    assert!(std::fs::read(dir.path().join("c.out")).unwrap() == file_content("coverprofile"));
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

/// A setup step that fails (a module that is no module, loaded after the
/// virtio drivers) ends the run with [`virtrun_sysinit::INIT_FAILED`] and the
/// reason, over virtio and over the UARTs; the user's code never runs.
#[test]
fn failed_setup_is_exit_code_255_with_its_reason() {
    let dir = tempfile::tempdir().unwrap();
    let bogus = dir.path().join("bogus.ko");
    std::fs::write(&bogus, "not a module\n").unwrap();
    for transport in ["pci", "isa"] {
        let out = virtrun([
            OsStr::new("-addModule"),
            bogus.as_os_str(),
            OsStr::new("-standalone"),
            example(Panics::Unwind).as_os_str(),
        ])
        .args(["0"])
        .transport(transport)
        .run();
        out.assert_code(virtrun_sysinit::INIT_FAILED)
            .assert_stdout(b"")
            .assert_stderr_contains("-bogus.ko: Exec format error (os error 8)");
    }
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
