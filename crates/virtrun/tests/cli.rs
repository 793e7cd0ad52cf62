//! Host-side behaviour of the CLI that needs no guest: usage, version and the errors
//! found before (or instead of) booting. Every failing run must exit 255 with one
//! clear line and leave nothing behind in `$TMPDIR` (issue 2, "Must show" 8).

mod common;

use common::{Output, assert_empty_dir, empty_tmpdir, kernel, virtrun_bare};
use std::ffi::OsString;
use std::time::Duration;

/// The usage text `-help` prints on stderr.
fn usage() -> Vec<u8> {
    let out = virtrun_bare(["-help"]).run();
    out.assert_code(0);
    out.stderr
}

/// Runs `args` (with the real kernel where `-kernel` is wanted) with a fresh empty
/// `TMPDIR`, checks exit 255 and that the directory is still empty afterwards.
#[track_caller]
fn fails(args: Vec<OsString>) -> Output {
    let tmp = empty_tmpdir();
    let out = virtrun_bare(args).tmpdir(tmp.path()).run();
    out.assert_code(255);
    assert!(
        out.stdout.is_empty(),
        "unexpected stdout: {:?}",
        out.stdout_text()
    );
    assert_empty_dir(tmp.path());
    out
}

/// `-nokvm -transport isa -kernel K` followed by `rest`.
fn with_kernel<const N: usize>(rest: [&str; N]) -> Vec<OsString> {
    let mut v: Vec<OsString> = ["-nokvm", "-transport", "isa", "-kernel"]
        .map(OsString::from)
        .into();
    v.push(kernel().into_os_string());
    v.extend(rest.map(OsString::from));
    v
}

/// Checks a flag-syntax error: first line is the message (containing each of
/// `needles`), then exactly the usage.
#[track_caller]
fn assert_message_then_usage(out: &Output, needles: &[&str]) {
    let text = out.stderr_text();
    let (first, rest) = text
        .split_once('\n')
        .unwrap_or_else(|| panic!("stderr has no complete line: {text:?}"));
    for n in needles {
        assert!(
            first.contains(n),
            "first stderr line lacks {n:?}: {first:?}"
        );
    }
    assert_eq!(
        rest.as_bytes(),
        usage().as_slice(),
        "usage does not follow the message; stderr:\n{text}"
    );
}

#[track_caller]
fn assert_line_contains(line: &str, needles: &[&str]) {
    for n in needles {
        assert!(line.contains(n), "error line lacks {n:?}: {line:?}");
    }
}

#[test]
fn help_prints_usage_on_stderr_and_exits_0() {
    for flag in ["-help", "--help", "-h"] {
        let out = virtrun_bare([flag]).run();
        out.assert_code(0);
        assert!(out.stdout.is_empty(), "{flag}: stdout not empty");
        let text = out.stderr_text();
        assert!(
            text.starts_with("Usage: virtrun"),
            "{flag}: no usage: {text:?}"
        );
        for f in [
            "-kernel",
            "-qemuBin",
            "-machine",
            "-cpu",
            "-nokvm",
            "-transport",
            "-memory",
            "-smp",
            "-standalone",
            "-noGoTestFlagRewrite",
            "-keepInitramfs",
            "-addFile",
            "-addModule",
            "-verbose",
            "-debug",
            "-version",
        ] {
            assert!(
                text.contains(&format!("  {f} ")) || text.contains(&format!("  {f}\n")),
                "{flag}: usage does not list {f}:\n{text}"
            );
        }
    }
}

#[test]
fn version_prints_on_stdout_and_exits_0() {
    let out = virtrun_bare(["-version"]).run();
    out.assert_code(0);
    let text = out.stdout_text();
    let version = text
        .strip_prefix("Version: ")
        .and_then(|v| v.strip_suffix('\n'))
        .unwrap_or_else(|| panic!("stdout is not `Version: <version>\\n`: {text:?}"));
    assert!(
        !version.is_empty() && !version.contains('\n'),
        "bad version line: {text:?}"
    );
    assert!(
        out.stderr.is_empty(),
        "unexpected stderr: {}",
        out.stderr_text()
    );
}

#[test]
fn a_cache_cap_that_is_not_a_size_is_one_line() {
    for bad in ["2X", "G", "-1", "lots"] {
        let tmp = empty_tmpdir();
        let out = virtrun_bare(with_kernel(["/usr/bin/true"]))
            .env("VIRTRUN_CACHE_MAX", bad)
            .tmpdir(tmp.path())
            .run();
        out.assert_code(255);
        let line = out.assert_one_line();
        assert_line_contains(&line, &[&format!("VIRTRUN_CACHE_MAX={bad}"), "not a size"]);
        assert_empty_dir(tmp.path());
    }
}

#[test]
fn non_elf_binary_is_one_line() {
    let out = fails(with_kernel(["/etc/hostname"]));
    let line = out.assert_one_line();
    assert_line_contains(&line, &["/etc/hostname", "ELF"]);
}

#[test]
fn truncated_elf_is_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let truncated = dir.path().join("truncated");
    let bash = std::fs::read("/usr/bin/bash").unwrap();
    std::fs::write(&truncated, &bash[..200]).unwrap();
    let out = fails(with_kernel([truncated.to_str().unwrap()]));
    let line = out.assert_one_line();
    assert_line_contains(&line, &[truncated.to_str().unwrap()]);
}

#[test]
fn missing_kernel_file_is_one_line() {
    let out = fails(
        ["-nokvm", "-kernel", "/nonexistent/vmlinuz", "/usr/bin/env"]
            .map(OsString::from)
            .into(),
    );
    let line = out.assert_one_line();
    assert_line_contains(&line, &["-kernel", "/nonexistent/vmlinuz"]);
}

/// Without `-kernel` and without a kernel in the cache (the running
/// kernel is looked for only for the host's own architecture): 255 and
/// one line that says where it looked and what to do.
#[test]
fn no_kernel_found_is_one_line() {
    let cache = tempfile::tempdir().unwrap();
    let tmp = empty_tmpdir();
    let busybox = common::busybox("arm64");
    let out = virtrun_bare([OsString::from("-nokvm"), busybox.into_os_string()])
        .env("VIRTRUN_CACHE", cache.path())
        .tmpdir(tmp.path())
        .run();
    out.assert_code(255);
    let line = out.assert_one_line();
    let expected = cache.path().join("kernels/arm64/vmlinuz");
    assert_eq!(
        line,
        format!(
            "virtrun: error: no kernel for arm64 (no -kernel given); looked at {} (missing); \
             pass -kernel PATH, or put a kernel image at {} (scripts/setup in virtrun's \
             sources fetches Debian's)\n",
            expected.display(),
            expected.display()
        )
    );
    assert_empty_dir(tmp.path());
}

#[test]
fn missing_binary_is_one_line() {
    let out = fails(with_kernel(["/nonexistent/binary"]));
    let line = out.assert_one_line();
    assert_line_contains(&line, &["/nonexistent/binary"]);
}

#[test]
fn unknown_flag_is_message_then_usage() {
    let out = fails(with_kernel(["-bogus", "/usr/bin/env"]));
    assert_message_then_usage(&out, &["-bogus"]);
}

#[test]
fn memory_out_of_range_is_message_then_usage() {
    let mut args = vec![OsString::from("-memory"), OsString::from("64")];
    args.extend(with_kernel(["/usr/bin/env"]));
    let out = fails(args);
    assert_message_then_usage(&out, &["-memory", "64"]);
}

#[test]
fn q35_rejects_mmio_transport() {
    let mut args = with_kernel(["/usr/bin/env"]);
    // Later flags win: this overrides the `-transport isa` of with_kernel.
    args.insert(args.len() - 1, "-transport".into());
    args.insert(args.len() - 1, "mmio".into());
    let out = fails(args);
    let line = out.assert_one_line();
    assert_line_contains(&line, &["mmio", "q35"]);
}

#[test]
fn missing_qemu_is_one_line_and_fast() {
    let mut args: Vec<OsString> = vec!["-qemuBin".into(), "qemu-system-doesnotexist".into()];
    args.extend(with_kernel(["/usr/bin/env"]));
    let tmp = empty_tmpdir();
    let out = virtrun_bare(args)
        .tmpdir(tmp.path())
        .timeout(Duration::from_secs(10))
        .run();
    out.assert_code(255);
    assert!(
        out.elapsed < Duration::from_secs(10),
        "took {:?}",
        out.elapsed
    );
    let line = out.assert_one_line();
    assert_line_contains(&line, &["qemu-system-doesnotexist"]);
    assert_empty_dir(tmp.path());
}

#[test]
fn relative_paths_are_resolved_against_cwd() {
    // A relative binary path is a file in the cwd, never looked up in PATH.
    let dir = tempfile::tempdir().unwrap();
    let tmp = empty_tmpdir();
    let out = virtrun_bare(with_kernel(["env"]))
        .cwd(dir.path())
        .tmpdir(tmp.path())
        .run();
    out.assert_code(255);
    let line = out.assert_one_line();
    assert_line_contains(&line, &["env"]);
    assert_empty_dir(tmp.path());
}

/// The test kernel copied into a fresh directory, away from its module
/// tree, with its `config-*` beside it as `edit` makes it.
fn kernel_copy(edit: impl Fn(&str) -> String) -> (tempfile::TempDir, std::path::PathBuf) {
    let real = kernel().canonicalize().unwrap();
    let name = real.file_name().unwrap().to_str().unwrap().to_string();
    let release = name.strip_prefix("vmlinuz-").unwrap().to_string();
    let dir = empty_tmpdir();
    let image = dir.path().join(&name);
    std::fs::copy(&real, &image).unwrap();
    let config = std::fs::read_to_string(real.with_file_name(format!("config-{release}"))).unwrap();
    std::fs::write(dir.path().join(format!("config-{release}")), edit(&config)).unwrap();
    (dir, image)
}

/// A kernel configuration with every virtio option taken out.
fn without_virtio(config: &str) -> String {
    config
        .lines()
        .filter(|l| !l.starts_with("CONFIG_VIRTIO"))
        .map(|l| format!("{l}\n"))
        .collect()
}

/// A stock kernel whose virtio drivers are modules, copied away from its
/// module tree: virtrun says so before booting instead of waiting for a guest
/// that can never answer.
#[test]
fn modular_virtio_without_module_tree_fails_before_boot() {
    let (_dir, image) = kernel_copy(|config| config.to_string());
    let out = fails(vec![
        "-nokvm".into(),
        "-qemuBin".into(),
        "qemu-system-never-started".into(),
        "-kernel".into(),
        image.into(),
        "/usr/bin/env".into(),
    ]);
    let line = out.assert_one_line();
    assert_line_contains(
        &line,
        &[
            "CONFIG_VIRTIO_PCI=m",
            "module tree",
            "-transport isa",
            "-modulesDir",
        ],
    );
}

/// `-transport isa` needs no virtio, so a kernel without it still runs
/// there, with its module tree but without modules on demand (whose disk is
/// virtio): virtrun gets as far as starting QEMU.
#[test]
fn isa_on_a_kernel_without_virtio_goes_without_modules_on_demand() {
    let (_dir, image) = kernel_copy(without_virtio);
    // A module tree of such a kernel: no virtio modules in it.
    let tree = tempfile::tempdir().unwrap();
    std::fs::write(tree.path().join("modules.dep"), "").unwrap();
    let out = fails(vec![
        "-nokvm".into(),
        "-transport".into(),
        "isa".into(),
        "-modulesDir".into(),
        tree.path().into(),
        "-qemuBin".into(),
        "qemu-system-never-started".into(),
        "-kernel".into(),
        image.into(),
        "/usr/bin/env".into(),
    ]);
    let line = out.assert_one_line();
    assert_line_contains(&line, &["qemu-system-never-started"]);
}

/// A kernel whose configuration says it has no virtio at all (a copy with
/// its `config-*` edited): one line before booting, naming the option.
#[test]
fn kernel_without_virtio_fails_before_boot() {
    let (_dir, image) = kernel_copy(without_virtio);
    let started = std::time::Instant::now();
    let out = fails(vec![
        "-nokvm".into(),
        "-kernel".into(),
        image.into(),
        "/usr/bin/env".into(),
    ]);
    assert!(started.elapsed() < Duration::from_secs(10));
    let line = out.assert_one_line();
    assert_line_contains(
        &line,
        &[
            "has no virtio",
            "CONFIG_VIRTIO",
            "is not set",
            "-transport isa",
        ],
    );
}
