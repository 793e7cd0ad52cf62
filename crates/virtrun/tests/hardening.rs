//! What virtrun does when things go wrong on purpose: a kernel without the
//! transport's drivers fails fast, nothing of a run is left behind even after
//! SIGKILL, and a hostile guest cannot write outside the outputs, grow
//! virtrun's memory or hang it (issue "standalone inits on stock kernels; fast
//! failure; nothing left behind").

mod common;

use common::{
    Output, assert_empty_dir, busybox, empty_tmpdir, kernel, kernel_of, payload, virtrun,
    virtrun_bare,
};
use std::ffi::OsString;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The limit for a clear failure of a guest that cannot talk to the host.
const FAST_FAILURE: Duration = Duration::from_secs(10);

/// The peak memory a hostile guest may drive virtrun to.
const MAX_RSS_KB: i64 = 50 * 1024;

#[track_caller]
fn assert_line_contains(out: &Output, needles: &[&str]) {
    let line = out.assert_one_line();
    for n in needles {
        assert!(line.contains(n), "error line lacks {n:?}: {line:?}");
    }
}

/// `kernel` copied alone into an empty directory: virtrun finds neither its
/// configuration nor its module tree.
fn kernel_alone(kernel: &Path) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("vmlinuz");
    std::fs::copy(kernel, &copy).unwrap();
    (dir, copy)
}

/// A kernel of `arch` that cannot load its virtio drivers, wrapped and standalone: the
/// guest sees the virtio device without its driver and says so at once; one
/// line, exit 255, well within the limit (the init used to wait 30 s for a
/// port that could never appear).
#[track_caller]
fn fails_fast_without_drivers(arch: &str, transport: &str, missing: &str) {
    let (_dir, alone) = kernel_alone(&kernel_of(arch));
    // Any static program of the architecture does: the guest never gets to it.
    let program = if arch == "amd64" {
        payload("exit")
    } else {
        busybox(arch)
    };
    let modes: [(&str, &[&str]); 2] = [("wrapped", &[]), ("standalone", &["-standalone"])];
    // One after the other: each run is timed, and two guests at once on a
    // small machine would measure the machine.
    for (mode, flags) in modes {
        let mut args: Vec<OsString> = vec![
            "-nokvm".into(),
            "-transport".into(),
            transport.into(),
            "-kernel".into(),
            alone.clone().into(),
        ];
        args.extend(flags.iter().map(OsString::from));
        args.push(program.clone().into());
        let tmp = empty_tmpdir();
        let out = virtrun_bare(args).tmpdir(tmp.path()).run();
        out.assert_code(255);
        assert_line_contains(
            &out,
            &[
                "guest init failed",
                missing,
                "-modulesDir",
                "-transport isa",
            ],
        );
        assert!(out.elapsed < FAST_FAILURE, "{mode}: took {:?}", out.elapsed);
        assert_empty_dir(tmp.path());
    }
}

#[test]
fn amd64_kernel_without_its_modules_fails_fast() {
    fails_fast_without_drivers("amd64", "pci", "virtio_pci module is not loaded");
}

#[test]
fn arm64_kernel_without_its_modules_fails_fast() {
    fails_fast_without_drivers("arm64", "mmio", "virtio_mmio module is not loaded");
}

/// The pid of a child of `parent` whose command starts with `prefix`.
fn child_of(parent: u32, prefix: &str) -> Option<u32> {
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let pid: u32 = e.file_name().to_str()?.parse().ok()?;
        let stat = std::fs::read_to_string(e.path().join("stat")).ok()?;
        // pid (comm) state ppid …: comm may hold spaces, the last ')' ends it.
        let (comm, rest) = stat.split_once(" (")?.1.rsplit_once(") ")?;
        let ppid: u32 = rest.split(' ').nth(1)?.parse().ok()?;
        (ppid == parent && comm.starts_with(prefix)).then_some(pid)
    })
}

/// Whether `pid` still runs (a zombie does not).
fn running(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s.rsplit_once(") ").map(|(_, r)| !r.starts_with('Z')))
        .unwrap_or(false)
}

/// Kills the process with this pid when dropped (a test that failed).
struct KillOnDrop(u32);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        // SAFETY: kill(2) on a child of ours; no memory involved.
        unsafe { libc::kill(self.0 as i32, libc::SIGKILL) };
    }
}

/// `kill -9` of virtrun while its guest runs with a 100 MB `-addFile`: the
/// archive (its parts, warm) never had a name in `TMPDIR`, was readable by its owner only while
/// it existed, and QEMU is gone within 2 s.
#[test]
fn sigkill_leaves_nothing_behind() {
    let big = Path::new(env!("CARGO_TARGET_TMPDIR")).join("hardening-100M");
    std::fs::write(&big, vec![0x5a; 100 << 20]).unwrap();
    let tmp = empty_tmpdir();
    let mut child = Command::new(env!("CARGO_BIN_EXE_virtrun"))
        // The archive and its unpacked copy must fit in the guest's memory.
        .args(["-nokvm", "-memory", "1024", "-kernel"])
        .arg(kernel())
        .arg("-addFile")
        .arg(&big)
        .arg(payload("sleep"))
        .env("TMPDIR", tmp.path())
        .env("VIRTRUN_ARGS", common::suite_args())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let virtrun = child.id();
    // A failed assertion must not leave the guest running for good.
    let guard = KillOnDrop(virtrun);
    // The payload says "ready" once the guest runs it.
    let mut ready = [0u8; 6];
    std::io::Read::read_exact(child.stdout.as_mut().unwrap(), &mut ready).unwrap();
    assert_eq!(&ready, b"ready\n");
    let qemu = child_of(virtrun, "qemu-system").expect("QEMU runs");

    assert_empty_dir(tmp.path());
    let archives: Vec<std::fs::Metadata> = std::fs::read_dir(format!("/proc/{virtrun}/fd"))
        .unwrap()
        .flatten()
        .filter(|fd| {
            std::fs::read_link(fd.path()).is_ok_and(|target| target.starts_with(tmp.path()))
        })
        .map(|fd| std::fs::metadata(fd.path()).unwrap())
        .collect();
    // The archive, or with warm start its boot and run parts.
    assert!(!archives.is_empty(), "the archive is open in TMPDIR");
    for archive in &archives {
        assert_eq!(archive.nlink(), 0, "the archive has no name");
        assert_eq!(archive.permissions().mode() & 0o777, 0o600);
    }
    let largest = archives.iter().map(|a| a.len()).max().unwrap_or(0);
    assert!(largest > 100 << 20, "{largest} bytes");

    child.kill().unwrap();
    let killed = Instant::now();
    child.wait().unwrap();
    std::mem::forget(guard);
    while running(qemu) {
        assert!(
            killed.elapsed() < Duration::from_secs(2),
            "QEMU {qemu} outlived virtrun by 2 s"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_empty_dir(tmp.path());
    std::fs::remove_file(&big).unwrap();
}

/// `-keepInitramfs` keeps a named archive, but only its owner may read it.
#[test]
fn a_kept_archive_is_private() {
    let tmp = empty_tmpdir();
    let out = virtrun([
        "-keepInitramfs".into(),
        payload("exit").into_os_string(),
        "3".into(),
    ])
    .tmpdir(tmp.path())
    .run();
    out.assert_code(3);
    let line = out.assert_one_line();
    let path = PathBuf::from(
        line.trim_end()
            .strip_prefix("virtrun: initramfs kept at ")
            .unwrap_or_else(|| panic!("{line:?}")),
    );
    assert!(path.starts_with(tmp.path()), "{}", path.display());
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&path), 0o600);
    assert_eq!(mode(path.parent().unwrap()), 0o700);
    assert!(std::fs::read(&path).unwrap().starts_with(b"070701"));
}

/// A hostile payload's run over ISA UARTs (where it can write on the control
/// channel itself), with a gocoverdir output in a fresh directory.
fn hostile(attack: &str, out_dir: &Path) -> Output {
    let out = virtrun([
        payload("hostile").into_os_string(),
        attack.into(),
        format!("-test.gocoverdir={}", out_dir.display()).into(),
    ])
    .transport("isa")
    .run();
    assert!(
        out.max_rss_kb < MAX_RSS_KB,
        "{attack}: virtrun's peak RSS was {} KiB",
        out.max_rss_kb
    );
    out
}

/// The guest names files in an output directory: a symlink planted there is
/// replaced, not followed, and names that leave the directory are refused.
#[test]
fn hostile_guest_names_no_host_path() {
    let dir = tempfile::tempdir().unwrap();
    let victim = dir.path().join("victim");
    std::fs::write(&victim, b"precious\n").unwrap();
    let covdata = dir.path().join("covdata");
    std::fs::create_dir(&covdata).unwrap();
    std::os::unix::fs::symlink(&victim, covdata.join("planted")).unwrap();

    let out = hostile("names", &covdata);
    out.assert_code(255);
    assert_line_contains(
        &out,
        &[
            "output file from the guest",
            r#"refused the file name "../escape""#,
        ],
    );
    assert_eq!(std::fs::read(&victim).unwrap(), b"precious\n");
    let planted = covdata.join("planted");
    assert!(!planted.is_symlink());
    assert_eq!(std::fs::read(&planted).unwrap(), b"from the guest\n");
    let mut names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    names.sort();
    assert_eq!(names, ["covdata", "victim"]);
    assert!(!Path::new("/abs").exists());
}

#[test]
fn hostile_guest_endless_event_line_stops_the_run() {
    let dir = tempfile::tempdir().unwrap();
    let out = hostile("endless", dir.path());
    out.assert_code(255);
    assert_line_contains(
        &out,
        &["guest broke the protocol", "longer than 65536 bytes"],
    );
}

#[test]
fn hostile_guest_file_of_a_terabyte_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let out = hostile("huge", dir.path());
    out.assert_code(255);
    // The file stops arriving, and the init waits for the host's word to
    // power off: the host ends the run.
    assert_line_contains(
        &out,
        &["guest broke the protocol", "of 1099511627776 bytes"],
    );
}

#[test]
fn hostile_guest_flood_of_errors_is_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let out = hostile("flood", dir.path());
    out.assert_code(255);
    assert_line_contains(&out, &["guest init failed: eeee"]);
}
