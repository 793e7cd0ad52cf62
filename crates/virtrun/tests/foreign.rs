//! Foreign architectures end to end: the Debian arm64 and riscv64 kernels
//! with their default transport (mmio, virtio modules loaded from the
//! kernels' own module trees), static and dynamic payloads of those
//! architectures, and a kernel that does not match the binary.

mod common;

use common::{busybox, cross_dynamic, kernel_of, payload, virtrun_bare};
use std::ffi::OsString;

/// `virtrun -nokvm -kernel <arch kernel> args...`
fn on(arch: &str, args: impl IntoIterator<Item = OsString>) -> common::Virtrun {
    let mut argv: Vec<OsString> = vec!["-nokvm".into(), "-kernel".into(), kernel_of(arch).into()];
    argv.extend(args);
    virtrun_bare(argv)
}

/// A static payload (busybox) over the default transport, with two CPUs.
fn static_busybox_sees_two_cpus(arch: &str, machine: &str) {
    on(
        arch,
        [
            "-smp".into(),
            "2".into(),
            busybox(arch).into(),
            "sh".into(),
            "-c".into(),
            "echo \"$(uname -m) $(nproc)\"; exit 9".into(),
        ],
    )
    .run()
    .assert_code(9)
    .assert_stdout(format!("{machine} 2\n").as_bytes());
}

/// A dynamic program with a non-libc library, plus an `-addFile` dynamic
/// program with a library of its own, which the first one runs.
fn dynamic_programs_get_their_libraries(arch: &str) {
    let main = cross_dynamic(arch, "greet", "greet");
    let added = cross_dynamic(arch, "greet", "other");
    on(
        arch,
        [
            "-addFile".into(),
            added.into(),
            main.into(),
            "/data/greet".into(),
            "main".into(),
        ],
    )
    .run()
    .assert_code(42)
    .assert_stdout(b"hello from main\nhello from greet\n");
}

#[test]
fn arm64_static_busybox_with_two_cpus() {
    static_busybox_sees_two_cpus("arm64", "aarch64");
}

#[test]
fn riscv64_static_busybox_with_two_cpus() {
    static_busybox_sees_two_cpus("riscv64", "riscv64");
}

#[test]
fn arm64_dynamic_programs_get_their_libraries() {
    dynamic_programs_get_their_libraries("arm64");
}

#[test]
fn riscv64_dynamic_programs_get_their_libraries() {
    dynamic_programs_get_their_libraries("riscv64");
}

#[test]
fn amd64_with_two_cpus() {
    on(
        "amd64",
        ["-smp".into(), "2".into(), "/usr/bin/nproc".into()],
    )
    .run()
    .assert_code(0)
    .assert_stdout(b"2\n");
}

#[test]
fn x86_64_binary_with_arm64_kernel_fails_before_boot() {
    // A QEMU that does not exist proves nothing was booted.
    let out = on(
        "arm64",
        [
            "-qemuBin".into(),
            "qemu-system-never-started".into(),
            payload("exit").into(),
        ],
    )
    .run();
    out.assert_code(255);
    let line = out.assert_one_line();
    assert!(
        line.contains("arm64") && line.contains("amd64") && line.contains("x86_64"),
        "{line}"
    );
}
