//! Warm start: a guest saved once when it parked and restored for later
//! runs (`crates/virtrun/src/vm/snapshot.rs`). Warm runs must be what cold
//! runs are, byte for byte; the cache must stay sound whatever happens to
//! it.

mod common;

use common::{Output, empty_tmpdir, kernel, kernel_of, payload, virtrun};
use std::ffi::OsString;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A cache of its own for a test that looks into it or changes it, with
/// the shared cache's kernel copies and module tree images linked in (not
/// made again).
fn private_cache() -> tempfile::TempDir {
    let shared = common::cache_dir();
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    for entry in std::fs::read_dir(&shared).unwrap().flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if (name.starts_with("vmlinux-") || name.starts_with("modules-"))
            && !name.ends_with(".lock")
        {
            let to = dir.path().join(entry.file_name());
            if std::fs::hard_link(entry.path(), &to).is_err() {
                std::fs::copy(entry.path(), &to).unwrap();
            }
        }
    }
    dir
}

/// The snapshots in `cache`.
fn snapshots(cache: &Path) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(cache)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("snapshot-"))
        })
        .collect();
    found.sort();
    found
}

/// A run with `-debug`, checked to have started as `how` says (`warm
/// start from`, `no snapshot`, `restore failed`, `cold boot: no warm start
/// with`).
#[track_caller]
fn debug_run(cache: &Path, args: &[OsString], how: &str) -> Output {
    let out = virtrun(["-debug".into()].iter().chain(args))
        .env("VIRTRUN_CACHE", cache)
        .run();
    out.assert_stderr_contains(how);
    out
}

/// Checks that a `-debug` run printed nothing that a cold run would not:
/// only debug lines and the guest init's.
#[track_caller]
fn assert_only_debug_lines(out: &Output, what: &str) {
    assert!(
        !out.stderr_text()
            .lines()
            .any(|l| !l.starts_with("virtrun: [") && !l.contains("virtrun-init")),
        "{what}: a line that a cold run would not print:\n{}",
        out.stderr_text()
    );
}

fn os(args: &[&str]) -> Vec<OsString> {
    args.iter().map(OsString::from).collect()
}

#[test]
fn warm_runs_are_cold_runs_byte_for_byte() {
    let cache = private_cache();
    let streams: OsString = payload("streams").into();
    let cases: Vec<(Vec<OsString>, Vec<u8>)> = vec![
        (vec![payload("bytes").into()], Vec::new()),
        (
            vec![streams.clone(), "300000".into(), "70000".into()],
            Vec::new(),
        ),
        (vec![payload("exit").into(), "42".into()], Vec::new()),
        (vec![payload("signal").into(), "15".into()], Vec::new()),
        // stdin to its end-of-file: cat's output is its input.
        (
            vec![payload("args").into(), "a b".into(), "".into(), "ü".into()],
            Vec::new(),
        ),
        (
            os(&["/bin/cat"]),
            (0..=255u8).cycle().take(100_000).collect(),
        ),
    ];
    let warmed = debug_run(cache.path(), &[payload("exit").into()], "making it");
    warmed.assert_code(0);
    for (args, stdin) in cases {
        let run = |extra: &[&str]| {
            virtrun(os(extra).into_iter().chain(args.iter().cloned()))
                .env("VIRTRUN_CACHE", cache.path())
                .stdin(stdin.clone())
                .run()
        };
        let cold = run(&["-noSnapshot"]);
        let warm = run(&[]);
        assert_eq!(warm.code, cold.code, "{args:?}: exit codes");
        warm.assert_stdout(&cold.stdout);
        assert_eq!(
            warm.stderr_text(),
            cold.stderr_text(),
            "{args:?}: stderr differs"
        );
    }
    // One snapshot served all: the runs were warm.
    assert_eq!(snapshots(cache.path()).len(), 1);
    debug_run(cache.path(), &[payload("exit").into()], "warm start from");
}

#[test]
fn output_files_come_back_from_a_warm_run() {
    let cache = private_cache();
    let dir = empty_tmpdir();
    let args = |name: &str| -> Vec<OsString> {
        vec![
            payload("outfiles").into(),
            format!("-test.cpuprofile={}", dir.path().join(name).display()).into(),
        ]
    };
    debug_run(cache.path(), &args("cold.prof"), "making it").assert_code(0);
    debug_run(cache.path(), &args("warm.prof"), "warm start from").assert_code(0);
    let cold = std::fs::read(dir.path().join("cold.prof")).unwrap();
    let warm = std::fs::read(dir.path().join("warm.prof")).unwrap();
    assert!(!cold.is_empty());
    assert_eq!(warm, cold);
}

#[test]
fn eight_warm_runs_at_once_from_one_snapshot() {
    let cache = private_cache();
    debug_run(cache.path(), &[payload("exit").into()], "making it");
    let runs: Vec<_> = (0..8)
        .map(|i| {
            let cache = cache.path().to_path_buf();
            std::thread::spawn(move || {
                let stdin = format!("guest {i}\n").repeat(1000);
                let out = virtrun([OsString::from("-debug"), "/bin/cat".into()])
                    .env("VIRTRUN_CACHE", &cache)
                    .stdin(stdin.clone())
                    .timeout(Duration::from_secs(300))
                    .run();
                (i, stdin, out)
            })
        })
        .collect();
    for handle in runs {
        let (i, stdin, out) = handle.join().unwrap();
        out.assert_code(0)
            .assert_stdout(stdin.as_bytes())
            .assert_stderr_contains("warm start from");
        assert!(
            !out.stderr_text().contains("restore failed"),
            "run {i} fell back to a cold boot"
        );
    }
    assert_eq!(snapshots(cache.path()).len(), 1);
}

#[test]
fn restored_guests_get_fresh_entropy_and_the_hosts_clock() {
    let cache = private_cache();
    let fresh: OsString = payload("fresh").into();
    debug_run(cache.path(), std::slice::from_ref(&fresh), "making it");
    let mut seen = Vec::new();
    for _ in 0..2 {
        let out = debug_run(
            cache.path(),
            std::slice::from_ref(&fresh),
            "warm start from",
        );
        out.assert_code(0);
        let text = out.stdout_text();
        let (random, clock) = text.trim_end().split_once('\n').unwrap();
        assert_eq!(random.len(), 64, "{text}");
        let host = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let guest: u64 = clock.parse().unwrap();
        assert!(
            host.abs_diff(guest) <= 1 + out.elapsed.as_secs(),
            "guest clock {guest}, host {host}"
        );
        seen.push(random.to_string());
    }
    assert_ne!(seen[0], seen[1], "two restores drew the same random bytes");
}

#[test]
fn new_kernel_content_under_the_same_name_makes_a_new_snapshot() {
    let cache = private_cache();
    let dir = empty_tmpdir();
    let copy = dir.path().join("vmlinuz");
    std::fs::copy(kernel(), &copy).unwrap();
    // The copy has no module tree next to it: the original's.
    let modules = kernel().canonicalize().unwrap();
    let modules = modules
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("lib/modules");
    let tree = std::fs::read_dir(modules)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let run = |how: &str| {
        virtrun([
            OsString::from("-debug"),
            "-kernel".into(),
            copy.clone().into(),
            "-modulesDir".into(),
            tree.clone().into(),
            payload("exit").into(),
        ])
        .env("VIRTRUN_CACHE", cache.path())
        .run()
        .assert_code(0)
        .assert_stderr_contains(how);
    };
    run("making it");
    run("warm start from");
    // Rewritten in place: same name, new modification time.
    let bytes = std::fs::read(&copy).unwrap();
    std::thread::sleep(Duration::from_millis(20));
    std::fs::write(&copy, bytes).unwrap();
    run("making it");
    run("warm start from");
    assert_eq!(snapshots(cache.path()).len(), 2);
}

#[test]
fn a_damaged_snapshot_falls_back_to_a_cold_boot_and_is_replaced() {
    let cache = private_cache();
    let exit: OsString = payload("exit").into();
    let args = [exit, "5".into()];
    debug_run(cache.path(), &args, "making it").assert_code(5);
    let [snapshot] = &snapshots(cache.path())[..] else {
        panic!("one snapshot expected");
    };
    let whole = std::fs::read(snapshot).unwrap();
    let damages: [(&str, Vec<u8>); 3] = [
        ("truncated", whole[..whole.len() / 2].to_vec()),
        ("empty", Vec::new()),
        ("overwritten", {
            let mut bad = whole.clone();
            bad[..4096].fill(0x5a);
            bad
        }),
    ];
    for (what, bytes) in damages {
        std::fs::remove_file(snapshot).unwrap();
        std::fs::write(snapshot, &bytes).unwrap();
        let out = debug_run(cache.path(), &args, "restore failed");
        out.assert_code(5);
        assert_only_debug_lines(&out, what);
        // Replaced by a whole one (device state makes its length vary a
        // little from save to save), which the next run restores.
        let now = std::fs::metadata(snapshot).unwrap();
        assert!(now.len() > whole.len() as u64 * 9 / 10, "{what}");
        assert!(
            std::fs::read(snapshot).unwrap() != bytes,
            "{what}: not replaced"
        );
        assert_eq!(now.mode() & 0o777, 0o444, "{what}");
        debug_run(cache.path(), &args, "warm start from").assert_code(5);
    }
}

#[test]
fn the_cache_cap_evicts_the_least_recently_used() {
    let cache = private_cache();
    let exit: OsString = payload("exit").into();
    let run = |memory: &str, how: &str| {
        virtrun([
            OsString::from("-debug"),
            "-memory".into(),
            memory.into(),
            exit.clone(),
        ])
        .env("VIRTRUN_CACHE", cache.path())
        .env("VIRTRUN_CACHE_MAX", "1")
        .run()
        .assert_code(0)
        .assert_stderr_contains(how);
    };
    run("256", "making it");
    let first = snapshots(cache.path());
    assert_eq!(first.len(), 1);
    // Another identity: the first snapshot is over the cap and goes, as do
    // the kernel copies and module images no run used.
    run("320", "making it");
    let second = snapshots(cache.path());
    assert_eq!(second.len(), 1);
    assert_ne!(first, second);
    run("320", "warm start from");
    // What the last run used stays: its kernel and module tree.
    let left: Vec<String> = std::fs::read_dir(cache.path())
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| !n.ends_with(".lock"))
        .collect();
    assert!(left.iter().any(|n| n.starts_with("vmlinux-")), "{left:?}");
    assert!(left.iter().any(|n| n.starts_with("modules-")), "{left:?}");
    assert_eq!(left.len(), 3, "{left:?}");
}

#[test]
fn the_run_that_makes_a_snapshot_keeps_to_its_timeout() {
    // It boots, saves, and restores what it saved for its binary: the
    // limit counts from the first boot, as in a cold run.
    let cache = private_cache();
    let limit = Duration::from_secs(10);
    let started = std::time::Instant::now();
    let out = debug_run(
        cache.path(),
        &os(&["-timeout", "10s", payload("sleep").to_str().unwrap()]),
        "making it",
    );
    let took = started.elapsed();
    out.assert_code(124);
    out.assert_stdout(b"ready\n");
    out.assert_stderr_contains("virtrun: timed out after 10s while running the binary");
    assert!(
        took < limit + Duration::from_secs(2),
        "stopped after {took:?}, not at the limit of {limit:?}"
    );
    // The snapshot was made all the same, and serves the next run.
    debug_run(cache.path(), &[payload("exit").into()], "warm start from").assert_code(0);
}

#[test]
fn a_qemu_that_cannot_save_runs_cold_and_is_given_up_on() {
    // A QEMU without what saving needs (an older one, say): it refuses the
    // memory backend a guest that is saved runs on, and runs all else.
    let cache = private_cache();
    let qemu = cache.path().join("old-qemu");
    std::fs::write(
        &qemu,
        "#!/bin/sh\n\
         case \"$*\" in *memory-backend-file*)\n\
         echo \"qemu: Property 'memory-backend-file.offset' not found\" >&2; exit 1;;\n\
         esac\n\
         exec qemu-system-x86_64 \"$@\"\n",
    )
    .unwrap();
    std::fs::set_permissions(&qemu, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let args = [
        OsString::from("-qemuBin"),
        qemu.into(),
        payload("exit").into(),
        "7".into(),
    ];
    for how in [
        "QEMU ended before the guest parked: booting again without saving",
        "it failed before: no snapshot of this guest is made again",
        "failed twice to be saved or restored; no snapshot is made",
    ] {
        let out = debug_run(cache.path(), &args, how);
        out.assert_code(7);
        assert_only_debug_lines(&out, how);
    }
    // Only the marker of its failures: no snapshot.
    let left = snapshots(cache.path());
    assert!(
        left.iter()
            .all(|p| p.to_string_lossy().ends_with(".failed")),
        "{left:?}"
    );
}

#[test]
fn kill_9_while_a_snapshot_is_made_leaves_nothing() {
    let cache = private_cache();
    let before: Vec<_> = std::fs::read_dir(cache.path())
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    for delay in [1500, 2500, 3000] {
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_virtrun"))
            .args(["-nokvm", "-kernel"])
            .arg(kernel())
            .arg(payload("exit"))
            .env("VIRTRUN_CACHE", cache.path())
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(delay));
        child.kill().unwrap();
        child.wait().unwrap();
        let mut after: Vec<_> = std::fs::read_dir(cache.path())
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        // A run that got to finish its snapshot is fine too: whole and named.
        after.retain(|n| {
            !n.to_string_lossy().starts_with("snapshot-") || {
                let meta = std::fs::metadata(cache.path().join(n)).unwrap();
                assert_eq!(meta.mode() & 0o777, 0o444);
                false
            }
        });
        after.retain(|n| !n.to_string_lossy().ends_with(".lock"));
        let mut expected = before.clone();
        expected.retain(|n| !n.to_string_lossy().ends_with(".lock"));
        after.sort();
        expected.sort();
        assert_eq!(after, expected, "killed after {delay} ms");
    }
}

#[test]
fn warm_start_on_arm64_and_riscv64() {
    for arch in ["arm64", "riscv64"] {
        let cache = private_cache();
        let busybox = common::busybox(arch);
        let args: Vec<OsString> = vec![
            "-debug".into(),
            "-kernel".into(),
            kernel_of(arch).into(),
            busybox.into(),
            "sh".into(),
            "-c".into(),
            "read line; echo \"$line\" from $(uname -m); exit 3".into(),
        ];
        for how in ["making it", "warm start from"] {
            common::virtrun_bare(["-nokvm".into()].iter().chain(&args))
                .env("VIRTRUN_CACHE", cache.path())
                .stdin(b"hello\n".to_vec())
                .timeout(Duration::from_secs(300))
                .run()
                .assert_code(3)
                .assert_stdout(
                    format!(
                        "hello from {}\n",
                        if arch == "arm64" {
                            "aarch64"
                        } else {
                            "riscv64"
                        }
                    )
                    .as_bytes(),
                )
                .assert_stderr_contains(how);
        }
    }
}

#[test]
fn serial_transport_and_no_snapshot_stay_cold() {
    let cache = private_cache();
    for (extra, why) in [
        (vec!["-transport", "isa"], "a serial transport"),
        (vec!["-noSnapshot"], "-noSnapshot"),
    ] {
        let mut args = os(&extra);
        args.push(payload("exit").into());
        debug_run(cache.path(), &args, &format!("no warm start with {why}")).assert_code(0);
    }
    assert!(snapshots(cache.path()).is_empty());
}
