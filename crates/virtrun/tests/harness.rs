//! virtrun under test harnesses (docs/reference.md#go-test--exec, issue 6): `go
//! test -exec` with go test's file flags rewritten and the files brought back
//! (also for a test binary that is its own `-standalone` init), and `cargo
//! test` with virtrun as the target runner, coverage included.
//!
//! The guests boot the Debian kernel under emulation (`-nokvm`); each `go test`
//! of the one package and each `cargo test` of the one unit-test binary is one
//! boot, ten in all. The Go modules and the Rust crate live in `tests/data`
//! and are copied into temporary directories, so nothing lands in the tree.
//! Go 1.23 comes from `scripts/setup` (`/usr/lib/go-1.23/bin`).

mod common;

use common::{copy_tree, kernel, kernel_of, payload, virtrun};
use std::ffi::OsStr;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// Upper bound for one `go` or `cargo` command (builds included).
const COMMAND_TIMEOUT: Duration = Duration::from_secs(300);

/// Where `scripts/setup` installs Go 1.23.
const GO_BIN: &str = "/usr/lib/go-1.23/bin";

/// Go's build cache and GOPATH for these tests.
const GO_CACHE: &str = concat!(env!("CARGO_TARGET_TMPDIR"), "/go-cache");

/// The virtrun binary under test.
fn virtrun_bin() -> &'static str {
    env!("CARGO_BIN_EXE_virtrun")
}

/// virtrun's flags for the runs here: emulation, a time limit, the test kernel.
fn virtrun_flags() -> String {
    let k = kernel();
    let k = k.to_str().expect("kernel path is UTF-8");
    assert!(
        !k.contains(char::is_whitespace),
        "kernel path {k:?} has whitespace"
    );
    format!("-nokvm -timeout 3m -kernel {k}")
}

// --- running commands ----------------------------------------------------------

/// What a command did.
struct Ran {
    shown: String,
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Ran {
    fn context(&self) -> String {
        format!(
            "{}\nexit: {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}\n---",
            self.shown, self.code, self.stdout, self.stderr
        )
    }

    #[track_caller]
    fn assert_success(&self) -> &Self {
        assert_eq!(self.code, Some(0), "command failed\n{}", self.context());
        self
    }

    #[track_caller]
    fn assert_stdout_contains(&self, needle: &str) -> &Self {
        assert!(
            self.stdout.contains(needle),
            "stdout lacks {needle:?}\n{}",
            self.context()
        );
        self
    }

    #[track_caller]
    fn assert_stdout_lacks(&self, needle: &str) -> &Self {
        assert!(
            !self.stdout.contains(needle),
            "stdout has {needle:?}\n{}",
            self.context()
        );
        self
    }
}

/// Runs `cmd` (stdin from /dev/null) to completion; kills it and fails the test
/// after [`COMMAND_TIMEOUT`]. Logs how long it took (see `--nocapture`).
#[track_caller]
fn run(cmd: &mut Command) -> Ran {
    // The variables set for this command (but the long PATH), then argv.
    let shown = cmd
        .get_envs()
        .filter(|(k, _)| *k != "PATH")
        .filter_map(|(k, v)| Some(format!("{}={}", k.display(), v?.display())))
        .chain(
            std::iter::once(cmd.get_program())
                .chain(cmd.get_args())
                .map(|a| a.display().to_string()),
        )
        .collect::<Vec<_>>()
        .join(" ");
    let start = Instant::now();
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {shown}: {e}"));
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let out = thread::spawn(move || {
        let mut s = Vec::new();
        let _ = out.read_to_end(&mut s);
        s
    });
    let err = thread::spawn(move || {
        let mut s = Vec::new();
        let _ = err.read_to_end(&mut s);
        s
    });
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if start.elapsed() > COMMAND_TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            panic!("timeout: {shown} ran longer than {COMMAND_TIMEOUT:?}");
        }
        thread::sleep(Duration::from_millis(50));
    };
    let text = |b: Vec<u8>| String::from_utf8_lossy(&b).into_owned();
    let ran = Ran {
        shown,
        code: status.code(),
        stdout: text(out.join().unwrap()),
        stderr: text(err.join().unwrap()),
    };
    eprintln!("[{:>6.1} s] {}", start.elapsed().as_secs_f64(), ran.shown);
    ran
}

/// `tests/data/<name>` copied into a fresh directory `<tmp>/<name>`.
fn test_data(name: &str, tmp: &Path) -> PathBuf {
    let from = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name);
    let to = tmp.join(name);
    copy_tree(&from, &to);
    to
}

/// Every file under `dir`, as paths relative to it, sorted.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(root, &path, out);
            } else {
                out.push(path.strip_prefix(root).unwrap().to_path_buf());
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

/// Variables of the calling environment that would change what the nested
/// tools do: virtrun's own, the ones it forwards into the guest, and cargo's
/// build settings (the outer build may be instrumented, for one).
fn clean_env(cmd: &mut Command) -> &mut Command {
    cmd.env("VIRTRUN_ARGS", common::suite_args());
    for key in virtrun::run::FORWARDED_ENV {
        cmd.env_remove(key);
    }
    for key in [
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "CARGO_BUILD_RUSTFLAGS",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET",
        "CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUNNER",
        "RUSTC_WRAPPER",
        "GOROOT",
        "GOFLAGS",
        "GOOS",
        "GOARCH",
    ] {
        cmd.env_remove(key);
    }
    cmd
}

// --- go test -exec ----------------------------------------------------------------

/// A copy of `tests/data/gomod`, and a directory for the files its runs write.
struct GoModule {
    _tmp: tempfile::TempDir,
    /// The module's root.
    root: PathBuf,
    /// For the files the tests write.
    out: PathBuf,
}

impl GoModule {
    /// A copy of `tests/data/gomod`.
    fn new() -> Self {
        Self::of("gomod")
    }

    /// A copy of the module in `tests/data/NAME`.
    fn of(name: &str) -> Self {
        let go = Path::new(GO_BIN).join("go");
        assert!(
            go.is_file(),
            "{} missing: run scripts/setup (installs golang-1.23-go)",
            go.display()
        );
        let tmp = tempfile::tempdir().unwrap();
        let root = test_data(name, tmp.path());
        let out = tmp.path().join("out");
        std::fs::create_dir_all(&out).unwrap();
        GoModule {
            root,
            out,
            _tmp: tmp,
        }
    }

    /// `go ARGS` in the module's root, offline, with a cache of its own kept
    /// across test runs (building for coverage compiles much of std).
    fn go<I, S>(&self, args: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let path = std::env::var_os("PATH").unwrap_or_default();
        let mut paths = vec![PathBuf::from(GO_BIN)];
        paths.extend(std::env::split_paths(&path));
        let mut cmd = Command::new(Path::new(GO_BIN).join("go"));
        clean_env(&mut cmd)
            .args(args)
            .current_dir(&self.root)
            .env("PATH", std::env::join_paths(paths).unwrap())
            .env("GOFLAGS", "-mod=mod")
            .env("GOCACHE", Path::new(GO_CACHE).join("build"))
            .env("GOPATH", Path::new(GO_CACHE).join("gopath"))
            .env("GOTOOLCHAIN", "local")
            .env("GOPROXY", "off")
            .env("GOENV", "off");
        cmd
    }

    fn out(&self, name: &str) -> PathBuf {
        self.out.join(name)
    }
}

/// A cover profile's blocks (`file:start,end statements`) with their counts,
/// in file order; the first line is the mode.
fn cover_blocks(profile: &Path) -> Vec<(String, u64)> {
    let text = std::fs::read_to_string(profile).unwrap();
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("mode: set"), "{}", profile.display());
    lines
        .map(|l| {
            let (block, count) = l.rsplit_once(' ').unwrap();
            (block.to_owned(), count.parse().unwrap())
        })
        .collect()
}

/// `go test -exec "virtrun ..."` with a cover profile, a CPU profile and an
/// execution trace: the tests (one mounts a tmpfs, which needs root and a
/// real kernel) pass in the guest, and go's own tools read the three files.
/// The `VIRTRUN_ARGS` form runs the native-safe test, whose cover profile is
/// the one a native run writes. `-noGoTestFlagRewrite` passes the host path
/// through unchanged: the guest cannot create it, and the host file is left
/// alone.
#[test]
fn go_test_exec_with_profiles_and_coverage() {
    let m = GoModule::new();
    let exec = format!("{} {}", virtrun_bin(), virtrun_flags());

    // 1. Everything in the guest; the CPU profile relative to go test's
    //    -outputdir (by default its own directory, the module root), the
    //    others absolute.
    let cover = m.out("cover.out");
    let trace = m.out("trace.out");
    let cpu = m.root.join("cpu.out");
    run(m
        .go(["test", "-count=1", "-v", "-exec", &exec, "-coverprofile"])
        .arg(&cover)
        .args(["-cpuprofile", "cpu.out", "-trace"])
        .arg(&trace)
        .arg("./..."))
    .assert_success()
    .assert_stdout_contains("--- PASS: TestNative")
    .assert_stdout_contains("--- PASS: TestGuestMount")
    .assert_stdout_contains("ok  \texample.com/vt/vt")
    .assert_stdout_contains("coverage: 100.0% of statements");

    let func = run(m.go(["tool", "cover", "-func"]).arg(&cover));
    func.assert_success()
        .assert_stdout_contains("vt.go:6:\tClassify\t100.0%")
        .assert_stdout_contains("vt.go:20:\tSum\t\t100.0%");
    assert!(
        func.stdout.lines().last().unwrap().ends_with("100.0%"),
        "{}",
        func.context()
    );

    // go test keeps the test binary next to the profile for pprof.
    let test_binary = m.root.join("vt.test");
    assert!(test_binary.is_file(), "go test left no {test_binary:?}");
    run(m.go(["tool", "pprof", "-top"]).arg(&test_binary).arg(&cpu))
        .assert_success()
        .assert_stdout_contains("Type: cpu");
    run(m.go(["tool", "trace", "-d=1"]).arg(&trace))
        .assert_success()
        .assert_stdout_contains("testing.tRunner");

    // 2. VIRTRUN_ARGS, the native-safe test only; then the same natively.
    let guest_native = m.out("guest-native.out");
    run(m
        .go([
            "test",
            "-count=1",
            "-exec",
            virtrun_bin(),
            "-run",
            "TestNative",
        ])
        .env(
            "VIRTRUN_ARGS",
            format!("{} {}", virtrun_flags(), common::suite_args()),
        )
        .arg("-coverprofile")
        .arg(&guest_native)
        .arg("./..."))
    .assert_success()
    .assert_stdout_contains("ok  \texample.com/vt/vt");
    let native = m.out("native.out");
    run(m
        .go(["test", "-count=1", "-run", "TestNative", "-coverprofile"])
        .arg(&native)
        .arg("./..."))
    .assert_success();
    let (guest_blocks, native_blocks) = (cover_blocks(&guest_native), cover_blocks(&native));
    assert_eq!(
        guest_blocks, native_blocks,
        "TestNative covers other statements in the guest than natively"
    );
    // The guest-only test covers what TestNative does not (Classify(42)).
    let all = cover_blocks(&cover);
    assert!(all.iter().all(|(_, n)| *n == 1), "{all:?}");
    assert!(
        native_blocks.iter().any(|(_, n)| *n == 0),
        "TestNative should leave a branch uncovered: {native_blocks:?}"
    );

    // 3. -noGoTestFlagRewrite: the test binary gets the host path, which does
    //    not exist in the guest; testing says so and goes on; the host file
    //    keeps its content.
    let kept = m.out("norewrite-cpu.out");
    std::fs::write(&kept, "host content\n").unwrap();
    let exec_no_rewrite = format!("{exec} -noGoTestFlagRewrite");
    run(m
        .go(["test", "-count=1", "-v", "-exec", &exec_no_rewrite])
        .args(["-run", "TestNative", "-cpuprofile"])
        .arg(&kept)
        .arg("./..."))
    .assert_success()
    .assert_stdout_contains(&format!(
        "testing: open {}: no such file or directory",
        kept.display()
    ))
    .assert_stdout_contains("--- PASS: TestNative");
    assert_eq!(std::fs::read(&kept).unwrap(), b"host content\n");
}

/// `go test -exec "virtrun -standalone ..."` with a test binary that is its own
/// init (`tests/data/goinit`: a `TestMain` on a small stdlib-only init package
/// written against the standalone contract of docs/reference.md#channels, as
/// inits built with the original's Go `sysinit` are, ports left in the tty's
/// default mode, which turns `\n` into `\r\n`). Over virtio the cover profile,
/// CPU profile and trace come back on ports 2, 3, 4 and go's tools read them
/// (go test itself takes the cover profile only if it begins with `mode: set\n`
/// exactly, and the others are binary); over the ISA UARTs the cover profile
/// does, and a failing test makes go test fail, its exit code told with the
/// marker of the original's newer `sysinit` (`SYSINIT_EXIT_CODE: 1`).
#[test]
fn go_test_exec_standalone_with_profiles() {
    let m = GoModule::of("goinit");
    let exec = format!("{} -standalone {}", virtrun_bin(), virtrun_flags());

    let cover = m.out("cover.out");
    let trace = m.out("trace.out");
    let cpu = m.root.join("cpu.out");
    run(m
        .go(["test", "-count=1", "-v", "-exec", &exec, "-coverprofile"])
        .arg(&cover)
        .args(["-cpuprofile", "cpu.out", "-trace"])
        .arg(&trace)
        .arg("./suite"))
    .assert_success()
    .assert_stdout_contains("--- PASS: TestKind")
    .assert_stdout_contains("--- PASS: TestInGuest")
    .assert_stdout_contains("ports: map[1:/dev/hvc1 2:/dev/hvc2 3:/dev/hvc3 4:/dev/hvc4]")
    // The tty's line ends are undone on stdout too.
    .assert_stdout_lacks("\r")
    .assert_stdout_contains("ok  \texample.com/goinit/suite")
    .assert_stdout_contains("coverage: 100.0% of statements");
    run(m.go(["tool", "cover", "-func"]).arg(&cover))
        .assert_success()
        .assert_stdout_contains("suite.go:5:\tKind\t\t100.0%");
    let test_binary = m.root.join("suite.test");
    run(m.go(["tool", "pprof", "-top"]).arg(&test_binary).arg(&cpu))
        .assert_success()
        .assert_stdout_contains("Type: cpu");
    run(m.go(["tool", "trace", "-d=1"]).arg(&trace))
        .assert_success()
        .assert_stdout_contains("testing.tRunner");

    let isa_cover = m.out("isa-cover.out");
    let failed = run(m
        .go(["test", "-count=1", "-v", "-exec"])
        .arg(format!("{exec} -transport isa"))
        .arg("-coverprofile")
        .arg(&isa_cover)
        .args(["./suite", "-args", "-fail", "-marker=SYSINIT_EXIT_CODE"]));
    assert_eq!(failed.code, Some(1), "{}", failed.context());
    failed
        .assert_stdout_contains("ports: map[1:/dev/ttyS1 2:/dev/ttyS2]")
        .assert_stdout_contains("--- FAIL: TestMaybeFail")
        .assert_stdout_contains("FAIL\texample.com/goinit/suite")
        // go test exits 1 for any failure: virtrun found the marker, or it
        // would have said so.
        .assert_stdout_lacks("virtrun:");
    run(m.go(["tool", "cover", "-func"]).arg(&isa_cover))
        .assert_success()
        .assert_stdout_contains("suite.go:5:\tKind\t\t100.0%");
}

/// The same init built for arm64 (`GOARCH=arm64`) on Debian's arm64 kernel,
/// whose virtio drivers are modules, over virtio-mmio and over PCI. The init
/// loads no module, as inits built on the original's `sysinit` do: virtrun's
/// loader loads the drivers before it, so it finds its `hvc` ports, all its
/// tests pass and the cover profile arrives complete.
#[test]
fn go_test_exec_standalone_on_arm64_over_mmio_and_pci() {
    let m = GoModule::of("goinit");
    let k = kernel_of("arm64");
    let runs: Vec<_> = ["mmio", "pci"]
        .into_iter()
        .map(|transport| {
            let cover = m.out(&format!("arm64-{transport}.out"));
            let mut cmd = m.go(["test", "-count=1", "-v", "-exec"]);
            cmd.arg(format!(
                "{} -standalone -nokvm -timeout 3m -kernel {} -transport {transport}",
                virtrun_bin(),
                k.display()
            ))
            .arg("-coverprofile")
            .arg(&cover)
            .arg("./suite")
            .env("GOARCH", "arm64");
            (cover, thread::spawn(move || run(&mut cmd)))
        })
        .collect();
    for (cover, ran) in runs {
        ran.join()
            .unwrap()
            .assert_success()
            .assert_stdout_contains("--- PASS: TestKind")
            .assert_stdout_contains("--- PASS: TestInGuest")
            .assert_stdout_contains("ports: map[1:/dev/hvc1 2:/dev/hvc2]")
            .assert_stdout_contains("ok  \texample.com/goinit/suite")
            .assert_stdout_contains("coverage: 100.0% of statements");
        run(m.go(["tool", "cover", "-func"]).arg(&cover))
            .assert_success()
            .assert_stdout_contains("suite.go:5:\tKind\t\t100.0%");
    }
}

// --- -hostRoot ---------------------------------------------------------------------

/// virtrun's flags for `-hostRoot`: Debian's generic kernel of `arch` (the
/// cloud kernels have no 9p).
fn host_root_flags(arch: &str) -> String {
    format!(
        "-nokvm -timeout 3m -hostRoot -kernel {}",
        kernel_of(&format!("{arch}-generic")).display()
    )
}

/// A Go package's own tests, unchanged, under `go test -exec "virtrun
/// -hostRoot"`: a fixture read by relative path from the package directory,
/// a golden file rewritten in place (on the host: the package is in the
/// working directory's repository), a shell and the host's tools, root in
/// the user database.
#[test]
fn go_test_exec_host_root() {
    let m = GoModule::of("gohost");
    let exec = format!("{} {}", virtrun_bin(), host_root_flags("amd64"));
    let cover = m.out("host-cover.out");
    run(m
        .go(["test", "-count=1", "-v", "-exec", &exec, "-coverprofile"])
        .arg(&cover)
        .args([".", "-args", "-update"]))
    .assert_success()
    .assert_stdout_contains("--- PASS: TestFixtureByRelativePath")
    .assert_stdout_contains("--- PASS: TestGolden")
    .assert_stdout_contains("--- PASS: TestShellAndTools")
    .assert_stdout_contains("--- PASS: TestRootIsKnown")
    .assert_stdout_contains("ok  \texample.com/gohost");
    // go test's file flags still come back from a -hostRoot guest.
    let profile = std::fs::read_to_string(&cover).unwrap();
    assert!(profile.starts_with("mode: set\n"), "{profile:?}");
    assert_eq!(
        std::fs::read(m.root.join("testdata/golden.txt")).unwrap(),
        b"new\n"
    );
}

/// The same package built for arm64 (static, `CGO_ENABLED=0`) in an arm64
/// guest on Debian's generic arm64 kernel: the host's files, not its
/// programs (so no shell test).
#[test]
fn go_test_exec_host_root_on_arm64() {
    let m = GoModule::of("gohost");
    let exec = format!("{} {}", virtrun_bin(), host_root_flags("arm64"));
    run(m
        .go(["test", "-count=1", "-v", "-exec", &exec])
        .args(["-run", "Fixture|Golden|Root", ".", "-args", "-update"])
        .env("GOARCH", "arm64")
        .env("CGO_ENABLED", "0"))
    .assert_success()
    .assert_stdout_contains("--- PASS: TestFixtureByRelativePath")
    .assert_stdout_contains("--- PASS: TestGolden")
    .assert_stdout_contains("--- PASS: TestRootIsKnown");
    assert_eq!(
        std::fs::read(m.root.join("testdata/golden.txt")).unwrap(),
        b"new\n"
    );
}

/// A Rust integration test that opens its package's `Cargo.toml` by
/// relative path, with virtrun `-hostRoot` as cargo's runner; another that
/// runs an example through `cargo run`, whose runner, virtrun again in the
/// guest, runs it directly (virtrun and the target directory in the
/// package, so that the guest sees them).
#[test]
fn cargo_test_host_root() {
    let c = Crate::of("rusthost");
    // virtrun where the guest sees it, as an installed one is: the guest's
    // /tmp (where the test's target directory may be) is its own.
    let installed = c.root.join("bin/virtrun");
    std::fs::create_dir_all(installed.parent().unwrap()).unwrap();
    std::fs::copy(virtrun_bin(), &installed).unwrap();
    run(c
        .cargo_test("", &[])
        .env("CARGO_TARGET_DIR", c.root.join("target"))
        .env(
            "CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUNNER",
            format!("{} {}", installed.display(), host_root_flags("amd64")),
        ))
    .assert_success()
    .assert_stdout_contains("test reads_its_manifest_by_relative_path ... ok")
    .assert_stdout_contains("test runs_an_example_through_cargo ... ok");
}

// --- many output files ----------------------------------------------------------

/// What `tests/payloads/outfiles.c` writes for `key`.
fn outfile_content(key: u32) -> Vec<u8> {
    let size = if key == 1000 {
        0
    } else {
        (key * 37 % 11) as usize * 100_000 + key as usize + 1
    };
    let mut x = key.wrapping_mul(2_654_435_761).wrapping_add(1);
    (0..size)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x >> 24) as u8
        })
        .collect()
}

/// One run writes ten files (five profiles, five files in the gocoverdir, one
/// of them empty): all arrive byte for byte at the host paths, relative ones
/// joined with -test.outputdir or the cwd; a file written over a longer one
/// replaces it; the profile the binary did not write is left untouched.
#[test]
fn ten_output_files_arrive_intact() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let untouched = b"the guest never wrote this\n";
    std::fs::write(d.join("mutex.out"), untouched).unwrap();
    std::fs::write(d.join("cover.out"), vec![0xaa; 2 << 20]).unwrap();
    let arg = |flag: &str, path: &Path| format!("-test.{flag}={}", path.display());

    let out = virtrun([payload("outfiles")])
        .args([
            arg("outputdir", &d.join("od")),
            arg("coverprofile", &d.join("cover.out")),
        ])
        .args(["-test.cpuprofile", "cpu.out", "-test.memprofile=mem.out"])
        .args([
            arg("blockprofile", &d.join("block.out")),
            arg("mutexprofile", &d.join("mutex.out")),
        ])
        .args([
            "--test.trace",
            "trace.out",
            "-test.gocoverdir=gcd",
            "-test.v",
        ])
        .cwd(d)
        .run();
    out.assert_code(0);
    eprintln!("[{:>6.1} s] virtrun outfiles", out.elapsed.as_secs_f64());
    // The guest saw its own paths, never the host's.
    let stdout = out.stdout_text();
    assert!(
        !stdout.contains(d.to_str().unwrap()),
        "host paths reached the guest:\n{stdout}"
    );
    assert_eq!(stdout.lines().count(), 9, "{stdout}");

    // Keys: the flag's index in the guest's argv (each flag one argument
    // there), 1000 + J for gocoverdir's part-J.
    let mut expected: Vec<(PathBuf, Vec<u8>)> = vec![
        ("cover.out".into(), outfile_content(2)),
        ("od/cpu.out".into(), outfile_content(3)),
        ("od/mem.out".into(), outfile_content(4)),
        ("block.out".into(), outfile_content(5)),
        ("mutex.out".into(), untouched.to_vec()),
        ("od/trace.out".into(), outfile_content(7)),
    ];
    for j in 0..5 {
        expected.push((format!("gcd/part-{j}").into(), outfile_content(1000 + j)));
    }
    expected.sort();
    let names: Vec<PathBuf> = expected.iter().map(|(p, _)| p.clone()).collect();
    assert_eq!(files_under(d), names, "files on the host");
    for (name, content) in &expected {
        let got = std::fs::read(d.join(name)).unwrap();
        assert!(
            got == *content,
            "{}: got {} bytes, expected {} bytes{}",
            name.display(),
            got.len(),
            content.len(),
            got.iter()
                .zip(content)
                .position(|(a, b)| a != b)
                .map_or(String::new(), |i| format!(", first difference at {i}"))
        );
    }
}

// --- cargo test with virtrun as the runner ----------------------------------------

/// A copy of `tests/data/rustcrate` and its own target directory.
struct Crate {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    target: PathBuf,
}

impl Crate {
    fn new() -> Self {
        Self::of("rustcrate")
    }

    /// A copy of `tests/data/NAME`.
    fn of(name: &str) -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let root = test_data(name, tmp.path());
        let target = tmp.path().join("target");
        Crate {
            root,
            target,
            _tmp: tmp,
        }
    }

    /// `cargo test --offline ARGS` with virtrun (plus `runner_extra`) as the
    /// runner.
    fn cargo_test(&self, runner_extra: &str, args: &[&str]) -> Command {
        self.cargo(&["test"], runner_extra, args)
    }

    /// `cargo SUBCOMMAND --offline ARGS` with virtrun as the runner.
    fn cargo(&self, subcommand: &[&str], runner_extra: &str, args: &[&str]) -> Command {
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let mut cmd = Command::new(cargo);
        clean_env(&mut cmd)
            .args(subcommand)
            .arg("--offline")
            .args(args)
            .current_dir(&self.root)
            .env("CARGO_TARGET_DIR", &self.target)
            .env("CARGO_TERM_COLOR", "never")
            .env(
                "CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUNNER",
                format!("{} {}{runner_extra}", virtrun_bin(), virtrun_flags()),
            );
        cmd
    }
}

/// The test binary cargo ran (from its "Running unittests" line).
fn unittest_binary(ran: &Ran) -> PathBuf {
    let line = ran
        .stderr
        .lines()
        .find_map(|l| l.trim().strip_prefix("Running unittests src/lib.rs ("))
        .unwrap_or_else(|| panic!("no test binary named\n{}", ran.context()));
    PathBuf::from(line.strip_suffix(')').unwrap())
}

/// LLVM's raw profile magic (`\xfflprofr\x81`, little-endian).
const PROFRAW_MAGIC: u64 = 0xff6c_7072_6f66_7281;

/// `cargo test` runs the crate's unit tests in a guest (one holds only there),
/// fails when a test fails (`-env VT_FAIL=1` on the runner), passes a test
/// filter to libtest in the guest, and with `-C instrument-coverage` the
/// `.profraw` file comes back to the host directory `LLVM_PROFILE_FILE` names,
/// as the same binary writes it natively.
#[test]
fn cargo_test_with_virtrun_as_runner() {
    let c = Crate::new();

    // 1. Passes, the guest-only test included.
    let ran = run(&mut c.cargo_test("", &[]));
    ran.assert_success()
        .assert_stdout_contains("test tests::guest_only ... ok")
        .assert_stdout_contains("test tests::classifies ... ok")
        .assert_stdout_contains("test result: ok. 3 passed; 0 failed");

    // 2. A failing test fails cargo test.
    let ran = run(&mut c.cargo_test(" -env VT_FAIL=1", &[]));
    assert_eq!(ran.code, Some(101), "{}", ran.context());
    ran.assert_stdout_contains("test tests::fails_on_request ... FAILED")
        .assert_stdout_contains("VT_FAIL is set")
        .assert_stdout_contains("test result: FAILED. 2 passed; 1 failed");

    // 3. A filter reaches libtest in the guest.
    run(&mut c.cargo_test("", &["guest_only"]))
        .assert_success()
        .assert_stdout_contains("running 1 test\n")
        .assert_stdout_contains("test tests::guest_only ... ok")
        .assert_stdout_lacks("tests::classifies")
        .assert_stdout_contains(
            "test result: ok. 1 passed; 0 failed; 0 ignored; 0 measured; 2 filtered out",
        );

    // 4. cargo nextest uses the same runner setting: each test in its own
    // guest, the guest-only one included.
    let ran = run(&mut c.cargo(&["nextest", "run"], "", &[]));
    ran.assert_success();
    let all = format!("{}{}", ran.stdout, ran.stderr);
    assert!(
        all.contains("PASS") && all.contains("tests::guest_only"),
        "{}",
        ran.context()
    );
    assert!(all.contains("3 tests run: 3 passed"), "{}", ran.context());

    // 5. Coverage: the guest's profile arrives where LLVM_PROFILE_FILE says.
    let prof = c.target.join("prof");
    std::fs::create_dir_all(&prof).unwrap();
    let ran = run(c
        .cargo_test("", &[])
        .env("RUSTFLAGS", "-C instrument-coverage")
        .env("LLVM_PROFILE_FILE", prof.join("guest-%p-%m.profraw")));
    ran.assert_success()
        .assert_stdout_contains("test result: ok. 3 passed");
    let guest_files = files_under(&prof);
    assert_eq!(guest_files.len(), 1, "{guest_files:?}");
    let guest_name = guest_files[0].to_str().unwrap().to_owned();
    assert!(
        guest_name.starts_with("guest-")
            && guest_name.ends_with(".profraw")
            && !guest_name.contains('%'),
        "{guest_name}"
    );
    let guest = std::fs::read(prof.join(&guest_name)).unwrap();
    assert!(
        guest.len() > 8 && guest[..8] == PROFRAW_MAGIC.to_le_bytes(),
        "{guest_name} is no raw profile: {:02x?}",
        &guest[..guest.len().min(16)]
    );

    // The same binary natively (a native-safe test): same module signature
    // (%m), same layout (length, header up to the address-dependent deltas).
    let binary = unittest_binary(&ran);
    let native_dir = c.target.join("prof-native");
    run(clean_env(&mut Command::new(&binary))
        .args(["--exact", "tests::classifies"])
        .env("LLVM_PROFILE_FILE", native_dir.join("native-%p-%m.profraw")))
    .assert_success();
    let native_files = files_under(&native_dir);
    assert_eq!(native_files.len(), 1, "{native_files:?}");
    let native_name = native_files[0].to_str().unwrap().to_owned();
    let native = std::fs::read(native_dir.join(&native_name)).unwrap();
    let signature = |name: &str| {
        name.split_once('-')
            .unwrap()
            .1
            .split_once('-')
            .unwrap()
            .1
            .to_owned()
    };
    assert_eq!(signature(&guest_name), signature(&native_name));
    assert_eq!(guest.len(), native.len(), "profile sizes differ");
    assert_eq!(guest[..80], native[..80], "profile headers differ");
    assert_ne!(guest, native, "the guest ran other tests: counters differ");
}

/// The tests nextest ran and passed, by name, from its `PASS [...] … name`
/// lines.
fn nextest_passed(ran: &Ran) -> Vec<String> {
    let all = format!("{}{}", ran.stdout, ran.stderr);
    let mut names: Vec<String> = all
        .lines()
        .filter(|l| l.trim_start().starts_with("PASS ["))
        .filter_map(|l| l.split_whitespace().last().map(str::to_owned))
        .collect();
    names.sort();
    names
}

/// A suite split across machines with nextest's own means: `--partition
/// count:1/2` on one, `count:2/2` on the other, virtrun as the runner of
/// both. Together they run every test once.
#[test]
fn nextest_partitions_run_every_test_once() {
    let c = Crate::new();
    let mut parts = Vec::new();
    for part in ["count:1/2", "count:2/2"] {
        let ran = run(&mut c.cargo(&["nextest", "run"], "", &["--partition", part]));
        ran.assert_success();
        let passed = nextest_passed(&ran);
        assert!(
            !passed.is_empty(),
            "partition {part} ran nothing\n{}",
            ran.context()
        );
        parts.push(passed);
    }
    let mut all: Vec<String> = parts.concat();
    all.sort();
    assert_eq!(
        all,
        [
            "tests::classifies",
            "tests::fails_on_request",
            "tests::guest_only"
        ],
        "partitions {parts:?}"
    );
}

/// Standalone inits built with the original's releases, one per way its
/// `sysinit` wrote to ports 1 and up (`tests/data/goinit/ports`, its
/// `sysinit` a stand-in required at the release's version through a local
/// `replace`, so that the build information names it): the tty's default
/// mode up to v0.14, a base64 stream in v0.15.0–v0.15.3, raw ports from
/// v0.15.4. virtrun reads the version from the init's build information;
/// data with `\r\n`, `\r\r\n`, NUL and every byte value arrives exactly on
/// stdout and in the file of a go test flag, in all three.
#[test]
fn standalone_inits_of_every_original_release_keep_their_bytes() {
    let m = GoModule::of("goinit");
    let mut want = b"line\r\ncr cr lf\r\r\nlf\nnul\0\n".to_vec();
    want.extend((0..3 * 256).map(|i| i as u8));
    for (version, style, chosen) in [
        ("v0.14.0", "tty", "Tty"),
        ("v0.15.2", "base64", "Base64"),
        ("v0.15.4", "raw", "Raw"),
    ] {
        let modfile = format!("go.{version}.mod");
        std::fs::write(
            m.root.join(&modfile),
            format!(
                "module example.com/goinit\n\ngo 1.21\n\n\
                 require github.com/aibor/virtrun {version}\n\n\
                 replace github.com/aibor/virtrun => ./fakevirtrun\n"
            ),
        )
        .unwrap();
        let init = m.out(&format!("init-{version}"));
        run(m
            .go(["build", &format!("-modfile={modfile}")])
            .args(["-ldflags", &format!("-X main.style={style}"), "-o"])
            .arg(&init)
            .arg("./ports"))
        .assert_success();
        let file = m.out(&format!("file-{version}"));
        let mut args: Vec<std::ffi::OsString> = ["-standalone", "-debug"].map(Into::into).to_vec();
        args.push(init.into());
        args.push(format!("-test.coverprofile={}", file.display()).into());
        let out = virtrun(args).run();
        out.assert_code(0)
            .assert_stderr_contains(&format!(
                "standalone init's ports: {chosen} (github.com/aibor/virtrun {version})"
            ))
            .assert_stdout(&want);
        assert!(
            std::fs::read(&file).unwrap() == want,
            "{version}: the file differs"
        );
    }
}
