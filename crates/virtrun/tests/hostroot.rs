//! The host's files in the guest (docs/reference.md#what-the-guest-sees):
//! `-hostRoot` (the host's root under a throw-away overlay, the repository
//! writable through) and `-share` (host directories writable through, in either
//! mode). They need a kernel with 9p: Debian's generic kernel, which
//! `scripts/setup` fetches.

mod common;

use common::{
    DEVICE_NODES, LINUX_SYSTEM, MODULES_ON_DEMAND, Output, empty_tmpdir, job_output, kernel,
    kernel_of, payload, virtrun_bare,
};
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// `-nokvm -kernel <generic> ARGS`, in `cwd`.
fn generic(args: &[&dyn AsRef<std::ffi::OsStr>], cwd: &Path) -> common::Virtrun {
    let mut argv: Vec<OsString> = vec!["-nokvm".into(), "-kernel".into()];
    argv.push(kernel_of("amd64-generic").into());
    argv.extend(args.iter().map(|a| a.as_ref().to_owned()));
    virtrun_bare(argv).cwd(cwd)
}

/// A fresh directory that is a repository (it has a `.git`), and a file
/// outside it that the guest can see but must not change.
struct Setting {
    _tmp: tempfile::TempDir,
    repo: PathBuf,
    outside: PathBuf,
}

impl Setting {
    fn new() -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let repo = tmp.path().join("repo");
        std::fs::create_dir_all(repo.join(".git")).unwrap();
        std::fs::create_dir_all(repo.join("pkg")).unwrap();
        // A host path the guest sees (its /tmp is its own, and the test's
        // target directory may be under /tmp), outside the repository.
        let outside = Path::new("/var/tmp").join(format!(
            "virtrun-hostroot-outside-{}-{}",
            std::process::id(),
            tmp.path().file_name().unwrap().to_string_lossy()
        ));
        std::fs::write(&outside, b"host content\n").unwrap();
        Setting {
            _tmp: tmp,
            repo,
            outside,
        }
    }
}

impl Drop for Setting {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.outside);
    }
}

#[track_caller]
fn stdout_is(out: &Output, want: &str) {
    out.assert_code(0).assert_stdout(want.as_bytes());
}

/// With `-hostRoot` the guest is as complete as the hermetic one (the same
/// facts, from the host's user database), and the binary runs from its
/// host path.
#[test]
fn host_root_guest_is_a_linux_system() {
    let s = Setting::new();
    let out = generic(&[&"-hostRoot", &payload("system")], &s.repo).run();
    stdout_is(&out, LINUX_SYSTEM);
}

/// Under `-hostRoot` the binary is a job too, and its `argv[0]` the path
/// virtrun was given, made absolute, which it can run itself again
/// through; the device nodes of modular drivers are there as well.
#[test]
fn host_root_binary_is_a_job_at_its_host_path() {
    let s = Setting::new();
    let job = payload("job");
    let out = generic(&[&"-hostRoot", &job], &s.repo).run();
    stdout_is(&out, &job_output(job.to_str().unwrap()));
    let out = generic(&[&"-hostRoot", &payload("devnodes")], &s.repo).run();
    stdout_is(&out, DEVICE_NODES);
}

/// `-net user` under `-hostRoot`: the resolver is in the guest's own view
/// of the host's `/etc`, whatever the host has there.
#[test]
fn host_root_user_network_has_its_resolver() {
    let s = Setting::new();
    let out = generic(
        &[
            &"-hostRoot",
            &"-net",
            &"user",
            &"/bin/cat",
            &"/etc/resolv.conf",
        ],
        &s.repo,
    )
    .run();
    stdout_is(&out, "nameserver 10.0.2.3\n");
}

/// virtrun inside a guest (a test that calls cargo, whose runner is
/// virtrun) runs the binary directly, whatever its guest flags say; with
/// `VIRTRUN_NESTED` set it would boot a guest, and fails here on the
/// kernel it cannot find.
#[test]
fn virtrun_inside_a_guest_runs_the_binary_directly() {
    let s = Setting::new();
    let virtrun = env!("CARGO_BIN_EXE_virtrun");
    // The debug build is large: a cold guest with it in its initramfs needs
    // more than the default memory (its path may be in the host's /tmp,
    // which the guest does not see, so the guest gets the file itself).
    let nested: [&dyn AsRef<std::ffi::OsStr>; 8] = [
        &"-memory",
        &"768",
        &"-hostRoot",
        &virtrun,
        &"-kernel",
        &"/no/such/kernel",
        &"/bin/echo",
        &"nested",
    ];
    stdout_is(&generic(&nested, &s.repo).run(), "nested\n");
    let mut really: Vec<&dyn AsRef<std::ffi::OsStr>> = vec![&"-env", &"VIRTRUN_NESTED=1"];
    really.extend(nested);
    let out = generic(&really, &s.repo).run();
    out.assert_code(255)
        .assert_stderr_contains("/no/such/kernel: no such file");
}

/// Modules on demand with the host's root too (Debian's generic kernel),
/// and the tree where `modprobe` looks for it.
#[test]
fn host_root_loads_modules_on_demand() {
    let s = Setting::new();
    let out = generic(&[&"-hostRoot", &payload("kmods")], &s.repo).run();
    stdout_is(&out, MODULES_ON_DEMAND);
    let out = generic(
        &[
            &"-hostRoot",
            &"/bin/sh",
            &"-c",
            &"grep -c ' veth$' /lib/modules/$(uname -r)/modules.alias; \
              grep -o '^kernel/drivers/net/veth.ko:' /lib/modules/$(uname -r)/modules.dep",
        ],
        &s.repo,
    )
    .run();
    stdout_is(&out, "1\nkernel/drivers/net/veth.ko:\n");
}

/// The working directory and the host's tools; writes into the repository
/// reach the host, writes elsewhere stay in the guest (the next run does not
/// see them) and leave the host's files as they were.
#[test]
fn host_root_writes_through_only_to_the_repository() {
    let s = Setting::new();
    let script = format!(
        "pwd; echo guest > {outside}; cat {outside}; echo guest > /etc/virtrun-probe; \
         echo repo > ../in-repo.txt; sleep 0; ip link show lo >/dev/null && echo tools",
        outside = s.outside.display()
    );
    let cwd = s.repo.join("pkg");
    let out = generic(&[&"-hostRoot", &"/bin/sh", &"-c", &script], &cwd).run();
    stdout_is(
        &out,
        &format!("{}\nguest\ntools\n", cwd.canonicalize().unwrap().display()),
    );
    assert_eq!(std::fs::read(&s.outside).unwrap(), b"host content\n");
    assert!(!Path::new("/etc/virtrun-probe").exists());
    assert_eq!(
        std::fs::read(s.repo.join("in-repo.txt")).unwrap(),
        b"repo\n"
    );

    let again = generic(
        &[
            &"-hostRoot",
            &"/bin/sh",
            &"-c",
            &"test ! -e /etc/virtrun-probe && echo fresh",
        ],
        &cwd,
    )
    .run();
    stdout_is(&again, "fresh\n");
}

/// `-share` in the hermetic guest: the directory at its host path, written
/// through, and the binary starts in it when the working directory is there.
#[test]
fn share_in_the_hermetic_guest() {
    let s = Setting::new();
    let share = s.repo.canonicalize().unwrap();
    let out = generic(
        &[
            &"-share",
            &share,
            &payload("writefile"),
            &"note.txt",
            &"from the guest",
        ],
        &share,
    )
    .run();
    stdout_is(&out, &format!("{}\n", share.display()));
    assert_eq!(
        std::fs::read(share.join("note.txt")).unwrap(),
        b"from the guest\n"
    );
}

/// The cloud kernel has no 9p: one line before booting, naming the kind of
/// kernel that works.
#[test]
fn host_root_on_a_kernel_without_9p_is_one_line() {
    let tmp = empty_tmpdir();
    let start = std::time::Instant::now();
    let out = virtrun_bare([
        OsString::from("-nokvm"),
        "-hostRoot".into(),
        "-kernel".into(),
        kernel().into(),
        "/bin/true".into(),
    ])
    .tmpdir(tmp.path())
    .run();
    out.assert_code(255);
    let line = out.assert_one_line();
    for needle in ["has no 9p", "-hostRoot", "generic"] {
        assert!(line.contains(needle), "{line:?} lacks {needle:?}");
    }
    assert!(start.elapsed() < Duration::from_secs(10));
}

#[test]
fn share_of_a_missing_path_or_a_file_is_one_line() {
    for (path, why) in [
        ("/nonexistent/virtrun-share", "-share"),
        ("/etc/hostname", "not a directory"),
    ] {
        let out = virtrun_bare([
            OsString::from("-nokvm"),
            "-share".into(),
            path.into(),
            "-kernel".into(),
            kernel().into(),
            "/bin/true".into(),
        ])
        .run();
        out.assert_code(255);
        let line = out.assert_one_line();
        assert!(line.contains(path) && line.contains(why), "{line:?}");
    }
}
