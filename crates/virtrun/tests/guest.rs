//! End-to-end tests that boot the Debian kernel under QEMU (TCG, `-transport isa`)
//! with our init, one guest per test (issue 2, "Must show" 1-7 and 9). Each test is
//! independent, so libtest runs them in parallel.

mod common;

use common::{contains, kernel, payload, virtrun, virtrun_bare};
use std::ffi::OsString;

const ENV_OUTPUT: &[u8] = b"HOME=/\nTERM=linux\nPATH=/data\n";

// --- 1. environment -----------------------------------------------------------

#[test]
fn env_sees_exactly_home_term_path() {
    virtrun(["/usr/bin/env"])
        .run()
        .assert_code(0)
        .assert_stdout(ENV_OUTPUT);
}

// --- 2. exit codes -------------------------------------------------------------

#[test]
fn exit_code_passes_through() {
    let exit = payload("exit");
    virtrun([exit.as_os_str(), "55".as_ref()])
        .run()
        .assert_code(55)
        .assert_stdout(b"");
}

#[test]
fn death_by_sigkill_is_137_and_named() {
    let signal = payload("signal");
    virtrun([signal.as_os_str(), "9".as_ref()])
        .run()
        .assert_code(137)
        .assert_stdout(b"")
        .assert_stderr_contains("SIGKILL");
}

// --- 3. initramfs content, shared libraries ----------------------------------------

#[test]
fn initramfs_has_added_files_init_and_libraries() {
    // find is dynamically linked: its libraries and interpreter must be packed too.
    let out = virtrun(["-addFile", "/usr/bin/bash", "/usr/bin/find", "/", "-xdev"]).run();
    out.assert_code(0);
    let listing = out.stdout_text();
    let lines: Vec<&str> = listing.lines().collect();
    for want in [
        "/data/bash",
        "/main",
        "/init",
        "/lib/libc.so.6",
        "/lib/ld-linux-x86-64.so.2",
    ] {
        assert!(
            lines.contains(&want),
            "{want} missing from the guest's / listing:\n{listing}\n--- stderr ---\n{}",
            out.stderr_text()
        );
    }
}

#[test]
fn added_dynamic_bash_runs_through_path() {
    virtrun([
        "-addFile",
        "/usr/bin/bash",
        "/usr/bin/env",
        "bash",
        "-c",
        "echo ok; exit 3",
    ])
    .run()
    .assert_code(3)
    .assert_stdout(b"ok\n");
}

// --- 4. stdout / stderr ----------------------------------------------------------

#[test]
fn stdout_carries_all_byte_values_and_stderr_is_separate() {
    let bytes = payload("bytes");
    let out = virtrun([bytes]).run();
    let all: Vec<u8> = (0..=255u8).collect();
    out.assert_code(0).assert_stdout(&all);
    out.assert_stderr_contains("only on stderr\n");
    assert!(!contains(&out.stdout, b"only on stderr"));
}

#[test]
fn stdout_carries_a_4_mib_line() {
    const N: usize = 4 << 20;
    let flood = payload("flood");
    let out = virtrun([flood.as_os_str(), N.to_string().as_ref()]).run();
    // What flood.c writes: 64 KiB writes of 'a'..'z' repeating (each write starts
    // again at 'a'), then a newline.
    let chunk: Vec<u8> = (0..65536).map(|i| b'a' + (i % 26) as u8).collect();
    let mut expected = Vec::with_capacity(N + 1);
    while expected.len() < N {
        let n = (N - expected.len()).min(chunk.len());
        expected.extend_from_slice(&chunk[..n]);
    }
    expected.push(b'\n');
    out.assert_code(0).assert_stdout(&expected);
}

// --- 5. stdin ----------------------------------------------------------------------

#[test]
fn stdin_reaches_cat_with_eof() {
    virtrun(["/usr/bin/cat"])
        .stdin(&b"a\nb"[..])
        .run()
        .assert_code(0)
        .assert_stdout(b"a\nb");
}

#[test]
fn stdin_200_kib_of_all_byte_values() {
    let input: Vec<u8> = (0..200 * 1024).map(|i| (i % 256) as u8).collect();
    virtrun(["/usr/bin/cat"])
        .stdin(input.clone())
        .run()
        .assert_code(0)
        .assert_stdout(&input);
}

#[test]
fn empty_stdin_is_immediate_eof() {
    virtrun(["/usr/bin/cat"])
        .stdin(Vec::new())
        .run()
        .assert_code(0)
        .assert_stdout(b"");
}

// --- 6. arguments ------------------------------------------------------------------

#[test]
fn arguments_arrive_byte_exact() {
    let args = [
        "a b",
        "'single'",
        "\"double\"",
        "back\\slash",
        "ü€ 日本",
        "",
        "-kernel",
        "tab\there",
        "new\nline",
    ];
    let mut argv: Vec<OsString> = vec![payload("args").into()];
    argv.extend(args.map(OsString::from));
    let mut expected = Vec::new();
    for a in args {
        expected.extend_from_slice(a.as_bytes());
        expected.push(0);
    }
    virtrun(argv).run().assert_code(0).assert_stdout(&expected);
}

// --- 7. argument sources and their precedence -----------------------------------------

fn kernel_str() -> String {
    kernel()
        .into_os_string()
        .into_string()
        .expect("kernel path is UTF-8")
}

/// A temp dir holding `.virtrun-args` with `content`.
fn args_file(content: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(".virtrun-args"), content).unwrap();
    dir
}

#[test]
fn virtrun_args_env_alone_is_enough() {
    virtrun_bare(["/usr/bin/env"])
        .env(
            "VIRTRUN_ARGS",
            format!("-nokvm  -transport isa\t-kernel {}", kernel_str()),
        )
        .run()
        .assert_code(0)
        .assert_stdout(ENV_OUTPUT);
}

#[test]
fn virtrun_args_file_with_variables() {
    let dir = args_file("-kernel\n  ${VIRTRUN_TEST_K}  \n-transport\n$VIRTRUN_TEST_T\n");
    virtrun_bare(["-nokvm", "/usr/bin/env"])
        .cwd(dir.path())
        .env("VIRTRUN_TEST_K", kernel_str())
        .env("VIRTRUN_TEST_T", "isa")
        .run()
        .assert_code(0)
        .assert_stdout(ENV_OUTPUT);
}

#[test]
fn command_line_beats_virtrun_args_file() {
    let dir = args_file("-machine\nbogus\n");
    let k = kernel_str();
    virtrun_bare([
        "-nokvm",
        "-transport",
        "isa",
        "-kernel",
        &k,
        "-machine",
        "q35",
        "/usr/bin/env",
    ])
    .cwd(dir.path())
    .run()
    .assert_code(0)
    .assert_stdout(ENV_OUTPUT);
}

#[test]
fn virtrun_args_file_beats_env() {
    let dir = args_file("-machine\nq35\n");
    let k = kernel_str();
    virtrun_bare(["-nokvm", "-transport", "isa", "-kernel", &k, "/usr/bin/env"])
        .cwd(dir.path())
        .env("VIRTRUN_ARGS", "-machine bogus")
        .run()
        .assert_code(0)
        .assert_stdout(ENV_OUTPUT);
}

#[test]
fn env_loses_to_virtrun_args_file_even_when_file_is_wrong() {
    // Does not boot: QEMU rejects the machine from the file.
    let dir = args_file("-machine\nbogus\n");
    let k = kernel_str();
    let out = virtrun_bare(["-nokvm", "-transport", "isa", "-kernel", &k, "/usr/bin/env"])
        .cwd(dir.path())
        .env("VIRTRUN_ARGS", "-machine q35")
        .run();
    out.assert_code(255)
        .assert_stdout(b"")
        .assert_stderr_contains("bogus");
}

#[test]
fn double_dash_kernel_equals_form() {
    virtrun_bare([
        "-nokvm",
        "--transport=isa",
        &format!("--kernel={}", kernel_str()),
        "/usr/bin/env",
    ])
    .run()
    .assert_code(0)
    .assert_stdout(ENV_OUTPUT);
}

// --- 9. guest failures ---------------------------------------------------------------

#[test]
fn guest_kernel_panic_is_255() {
    virtrun([payload("panic")])
        .run()
        .assert_code(255)
        .assert_stdout(b"")
        .assert_stderr_contains("panic");
}

#[test]
fn guest_out_of_memory_is_255() {
    virtrun([payload("oom")])
        .run()
        .assert_code(255)
        .assert_stdout(b"")
        .assert_stderr_contains("out of memory");
}
