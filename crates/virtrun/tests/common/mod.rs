//! Shared helpers of the integration tests: the test kernel, the C payloads and a
//! runner for the `virtrun` binary with a hard time limit.

// Each test binary uses a different subset of these helpers.
#![allow(dead_code)]

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

/// What `tests/payloads/system.c` prints in a guest that is the Linux
/// system programs assume, in either mode: the binary is a job (its own
/// process group) in a session it does not lead.
pub const LINUX_SYSTEM: &str = "session leader: 0\n\
    group leader: 1\n\
    uid 0: root\n\
    gid 0: root\n\
    nobody: 65534\n\
    hostname: virtrun\n\
    shm_open: 1\n\
    pty: 1\n\
    /tmp: 1777\n\
    /var/tmp: 1777\n";

/// What `tests/payloads/job.c` prints, but for its `argv[0]` line: a job
/// in PID 1's session, alive after a pseudo-terminal it opened closed, run
/// again through its `argv[0]`.
pub fn job_output(argv0: &str) -> String {
    format!(
        "session leader: 0\n\
         group leader: 1\n\
         in a session: 1\n\
         controlling terminal: 0\n\
         pty closed: alive\n\
         argv[0]: {argv0}\n\
         ran again\n"
    )
}

/// What `tests/payloads/devnodes.c` prints: the static device nodes of
/// modular drivers, and a TUN device made through one.
pub const DEVICE_NODES: &str = "/dev/net/tun: c 10:200 666\n\
    /dev/fuse: c 10:229 666\n\
    /dev/loop-control: c 10:237 600\n\
    tun: vrtun0\n";

/// What `tests/payloads/kmods.c` prints when modules load on demand.
pub const MODULES_ON_DEMAND: &str = "veth: ok\n\
    unknown kind: Operation not supported\n\
    af_alg sha256(abc): ba7816bf\n";

/// Upper bound for one `virtrun` run; a run that takes longer is killed and fails
/// its test. Generous: several guests boot in parallel under emulation.
pub const TIMEOUT: Duration = Duration::from_secs(120);

/// The kernel image the guest tests boot: `$VIRTRUN_TEST_KERNEL`, else the single
/// `vmlinuz-*` of the amd64 kernel `scripts/setup` put into the cache. Panics when
/// there is none: the guest tests never skip silently.
pub fn kernel() -> PathBuf {
    static KERNEL: OnceLock<PathBuf> = OnceLock::new();
    KERNEL.get_or_init(find_kernel).clone()
}

fn find_kernel() -> PathBuf {
    if let Some(k) = std::env::var_os("VIRTRUN_TEST_KERNEL").filter(|k| !k.is_empty()) {
        let k = PathBuf::from(k);
        assert!(
            k.is_file(),
            "VIRTRUN_TEST_KERNEL={} is not a file",
            k.display()
        );
        return k;
    }
    let boot = cache_dir().join("kernels/amd64/current/boot");
    let mut found: Vec<PathBuf> = std::fs::read_dir(&boot)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(OsStr::to_str)
                .is_some_and(|n| n.starts_with("vmlinuz-"))
        })
        .collect();
    match found.len() {
        0 => panic!(
            "no test kernel: run scripts/setup (nothing at {}/vmlinuz-*, VIRTRUN_TEST_KERNEL unset)",
            boot.display()
        ),
        1 => found.pop().unwrap(),
        _ => panic!(
            "no test kernel: several kernels in {}, set VIRTRUN_TEST_KERNEL to one of {found:?}",
            boot.display()
        ),
    }
}

/// The cache directory of scripts/setup.
pub fn cache_dir() -> PathBuf {
    std::env::var_os("VIRTRUN_CACHE")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("XDG_CACHE_HOME").map(|c| Path::new(&c).join("virtrun")))
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cache/virtrun")))
        .expect("no test kernel: run scripts/setup (neither VIRTRUN_CACHE nor HOME is set)")
}

/// A file scripts/setup put into the cache; panics (never skips) without it.
fn cached(rel: &str) -> PathBuf {
    let path = cache_dir().join(rel);
    assert!(
        path.exists(),
        "{} missing: run scripts/setup",
        path.display()
    );
    path
}

/// The Debian kernel of `arch` (`amd64`, `arm64`, `riscv64`) from the cache.
pub fn kernel_of(arch: &str) -> PathBuf {
    cached(&format!("kernels/{arch}/vmlinuz"))
}

/// Debian's static busybox of a foreign `arch` (`arm64`, `riscv64`).
pub fn busybox(arch: &str) -> PathBuf {
    cached(&format!("busybox/{arch}/busybox"))
}

/// The cross compiler of a foreign `arch`.
fn cross_gcc(arch: &str) -> &'static str {
    match arch {
        "arm64" => "aarch64-linux-gnu-gcc",
        "riscv64" => "riscv64-linux-gnu-gcc",
        other => panic!("no cross compiler for {other}"),
    }
}

fn run_gcc(gcc: &str, args: &[&OsStr]) {
    let out = Command::new(gcc)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {gcc} (run scripts/setup): {e}"));
    assert!(
        out.status.success(),
        "{gcc} {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `tests/payloads/<name>.c` cross-compiled for `arch` as a dynamic program
/// linked against a shared library `lib<lib>.so` built from
/// `tests/payloads/libgreet.c`, both in a fresh directory; the program finds
/// the library through `RUNPATH $ORIGIN`, as the resolver must.
pub fn cross_dynamic(arch: &str, name: &str, lib: &str) -> PathBuf {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/payloads");
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("cross-{arch}-{name}-{lib}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let gcc = cross_gcc(arch);
    let so = dir.join(format!("lib{lib}.so"));
    run_gcc(
        gcc,
        &[
            "-shared".as_ref(),
            "-fPIC".as_ref(),
            "-o".as_ref(),
            so.as_os_str(),
            src.join("libgreet.c").as_os_str(),
        ],
    );
    let exe = dir.join(name);
    run_gcc(
        gcc,
        &[
            "-o".as_ref(),
            exe.as_os_str(),
            src.join(format!("{name}.c")).as_os_str(),
            "-L".as_ref(),
            dir.as_os_str(),
            format!("-l{lib}").as_ref(),
            "-Wl,--enable-new-dtags,-rpath,$ORIGIN".as_ref(),
        ],
    );
    exe
}

/// Copies the directory tree `from` into `to`, leaving out `target`
/// directories (build output).
pub fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            if entry.file_name() != "target" {
                copy_tree(&entry.path(), &target);
            }
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// The static binary built from `tests/payloads/<name>.c` (`gcc -static -O2`), compiled
/// once per test process into `$CARGO_TARGET_TMPDIR/payloads/<name>`.
pub fn payload(name: &str) -> PathBuf {
    static BUILT: Mutex<Option<HashMap<String, PathBuf>>> = Mutex::new(None);
    let mut built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
    let built = built.get_or_insert_with(HashMap::new);
    if let Some(p) = built.get(name) {
        return p.clone();
    }
    let src = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/payloads")
        .join(format!("{name}.c"));
    assert!(src.is_file(), "no payload source {}", src.display());
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("payloads");
    std::fs::create_dir_all(&dir).unwrap();
    let out = dir.join(name);
    // Other test binaries may build the same payload at the same time: build under a
    // private name, then rename into place (atomic).
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let result = Command::new("gcc")
        .args(["-static", "-O2", "-o"])
        .arg(&tmp)
        .arg(&src)
        .output()
        .unwrap_or_else(|e| panic!("cannot run gcc for {}: {e}", src.display()));
    assert!(
        result.status.success(),
        "gcc -static -O2 {} failed ({}):\n{}",
        src.display(),
        result.status,
        String::from_utf8_lossy(&result.stderr)
    );
    std::fs::rename(&tmp, &out).unwrap();
    built.insert(name.to_owned(), out.clone());
    out
}

/// What one `virtrun` run produced.
#[derive(Debug)]
pub struct Output {
    /// virtrun's exit code.
    pub code: i32,
    /// Everything virtrun wrote to stdout.
    pub stdout: Vec<u8>,
    /// Everything virtrun wrote to stderr.
    pub stderr: Vec<u8>,
    /// How long the run took.
    pub elapsed: Duration,
    /// virtrun's peak resident memory, in KiB, as last sampled while it ran
    /// (every 20 ms).
    pub max_rss_kb: i64,
}

impl Output {
    /// stderr as text, for messages.
    pub fn stderr_text(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }

    /// stdout as text, for messages.
    pub fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    fn context(&self) -> String {
        format!(
            "exit code: {}\n--- stderr ({} bytes) ---\n{}\n--- stdout ({} bytes, head) ---\n{}\n---",
            self.code,
            self.stderr.len(),
            self.stderr_text(),
            self.stdout.len(),
            String::from_utf8_lossy(&self.stdout[..self.stdout.len().min(2000)]),
        )
    }

    /// Asserts the exit code.
    #[track_caller]
    pub fn assert_code(&self, code: i32) -> &Self {
        assert_eq!(self.code, code, "unexpected exit code\n{}", self.context());
        self
    }

    /// Asserts stdout byte for byte (shows the first difference, not megabytes).
    #[track_caller]
    pub fn assert_stdout(&self, expected: &[u8]) -> &Self {
        if self.stdout != expected {
            let first = self
                .stdout
                .iter()
                .zip(expected)
                .position(|(a, b)| a != b)
                .unwrap_or(self.stdout.len().min(expected.len()));
            let lo = first.saturating_sub(40);
            panic!(
                "stdout differs: got {} bytes, expected {} bytes, first difference at byte {first}\n\
                 got      [{lo}..]: {:?}\nexpected [{lo}..]: {:?}\n{}",
                self.stdout.len(),
                expected.len(),
                show(&self.stdout[lo..self.stdout.len().min(first + 40)]),
                show(&expected[lo..expected.len().min(first + 40)]),
                self.context()
            );
        }
        self
    }

    /// Asserts that stderr contains `needle`.
    #[track_caller]
    pub fn assert_stderr_contains(&self, needle: &str) -> &Self {
        assert!(
            contains(&self.stderr, needle.as_bytes()),
            "stderr lacks {needle:?}\n{}",
            self.context()
        );
        self
    }

    /// Asserts that stderr is exactly one newline-terminated line, and returns it.
    #[track_caller]
    pub fn assert_one_line(&self) -> String {
        let text = self.stderr_text();
        assert!(
            text.ends_with('\n') && text.matches('\n').count() == 1 && text.len() > 1,
            "stderr is not exactly one line\n{}",
            self.context()
        );
        text
    }
}

fn show(bytes: &[u8]) -> String {
    bytes.escape_ascii().to_string()
}

/// Whether `haystack` contains `needle`.
pub fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || haystack.windows(needle.len()).any(|w| w == needle)
}

/// Flags every virtrun a test starts gets, through `VIRTRUN_ARGS`: those of
/// `VIRTRUN_TEST_ARGS` (`-noSnapshot` runs the suite's guests cold), else
/// none.
pub fn suite_args() -> String {
    std::env::var("VIRTRUN_TEST_ARGS").unwrap_or_default()
}

/// Gives `cmd` the [`suite_args`] as its only `VIRTRUN_ARGS`.
pub fn set_suite_args(cmd: &mut Command) {
    match suite_args() {
        args if args.is_empty() => cmd.env_remove("VIRTRUN_ARGS"),
        args => cmd.env("VIRTRUN_ARGS", args),
    };
}

/// A `virtrun` invocation. By default it gets `-nokvm -transport isa -kernel K`
/// before the given arguments, an empty private cwd, `VIRTRUN_ARGS` from
/// [`suite_args`] and stdin
/// from `/dev/null`.
pub struct Virtrun {
    defaults: bool,
    args: Vec<OsString>,
    stdin: Option<Vec<u8>>,
    cwd: Option<PathBuf>,
    env: Vec<(OsString, OsString)>,
    tmpdir: Option<PathBuf>,
    timeout: Duration,
    transport: Option<&'static str>,
    stdout_stall: Duration,
}

/// A run with the default flags (`-nokvm -kernel K`, the default transport)
/// and `args`.
pub fn virtrun<I, S>(args: I) -> Virtrun
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    Virtrun {
        defaults: true,
        args: Vec::new(),
        stdin: None,
        cwd: None,
        env: Vec::new(),
        tmpdir: None,
        timeout: TIMEOUT,
        transport: None,
        stdout_stall: Duration::ZERO,
    }
    .args(args)
}

/// A run with exactly `args` (no default flags, not even `-kernel`).
pub fn virtrun_bare<I, S>(args: I) -> Virtrun
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let mut v = virtrun(args);
    v.defaults = false;
    v
}

impl Virtrun {
    /// Appends arguments.
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.args
            .extend(args.into_iter().map(|a| a.as_ref().to_owned()));
        self
    }

    /// Runs with `-transport T` instead of the default.
    pub fn transport(mut self, transport: &'static str) -> Self {
        self.transport = Some(transport);
        self
    }

    /// Feeds these bytes to stdin, then closes it.
    pub fn stdin(mut self, bytes: impl Into<Vec<u8>>) -> Self {
        self.stdin = Some(bytes.into());
        self
    }

    /// Runs in this directory instead of a fresh empty one.
    pub fn cwd(mut self, dir: impl AsRef<Path>) -> Self {
        self.cwd = Some(dir.as_ref().to_owned());
        self
    }

    /// Sets an environment variable.
    pub fn env(mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Self {
        self.env
            .push((key.as_ref().to_owned(), value.as_ref().to_owned()));
        self
    }

    /// Sets `TMPDIR`.
    pub fn tmpdir(mut self, dir: impl AsRef<Path>) -> Self {
        self.tmpdir = Some(dir.as_ref().to_owned());
        self
    }

    /// Overrides the time limit.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Reads virtrun's stdout only after `stall`: a consumer that does not
    /// keep up.
    pub fn stdout_stall(mut self, stall: Duration) -> Self {
        self.stdout_stall = stall;
        self
    }

    /// Runs virtrun to completion; kills it and fails the test if it exceeds the time
    /// limit or dies of a signal.
    #[track_caller]
    pub fn run(self) -> Output {
        let mut argv: Vec<OsString> = Vec::new();
        if self.defaults {
            argv.push("-nokvm".into());
            if let Some(t) = self.transport {
                argv.extend(["-transport", t].map(OsString::from));
            }
            argv.push("-kernel".into());
            argv.push(kernel().into_os_string());
        }
        argv.extend(self.args);

        // A private empty cwd, so that no stray .virtrun-args is picked up.
        let scratch = tempfile::tempdir().unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_virtrun"));
        cmd.args(&argv)
            .current_dir(self.cwd.as_deref().unwrap_or(scratch.path()))
            .env_remove("LLVM_PROFILE_FILE")
            .stdin(if self.stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        set_suite_args(&mut cmd);
        if let Some(t) = &self.tmpdir {
            cmd.env("TMPDIR", t);
        }
        // Variables virtrun forwards to the guest would change what payloads
        // print (the machine may set RUST_BACKTRACE, for one).
        for key in virtrun::run::FORWARDED_ENV {
            cmd.env_remove(key);
        }
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        let shown = format!("virtrun {argv:?}");

        let start = Instant::now();
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {shown}: {e}"));
        if let Some(mut pipe) = child.stdin.take() {
            let bytes = self.stdin.unwrap_or_default();
            // virtrun may exit without reading all of it (a broken pipe is its business);
            // the thread is not joined, so a stuck reader cannot hang the test.
            thread::spawn(move || {
                let _ = pipe.write_all(&bytes);
            });
        }
        let mut out_pipe = child.stdout.take().unwrap();
        let mut err_pipe = child.stderr.take().unwrap();
        let stall = self.stdout_stall;
        let out = thread::spawn(move || {
            thread::sleep(stall);
            let mut b = Vec::new();
            out_pipe.read_to_end(&mut b).map(|_| b)
        });
        let err = thread::spawn(move || {
            let mut b = Vec::new();
            err_pipe.read_to_end(&mut b).map(|_| b)
        });

        let mut max_rss_kb = 0;
        let status = loop {
            max_rss_kb = max_rss_kb.max(peak_rss_kb(child.id()));
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if start.elapsed() > self.timeout {
                let _ = child.kill();
                let _ = child.wait();
                // QEMU may hold the pipes open a little longer; do not wait for it.
                panic!("timeout: {shown} ran longer than {:?}", self.timeout);
            }
            thread::sleep(Duration::from_millis(20));
        };
        let elapsed = start.elapsed();
        // A child that outlived virtrun (a leaked QEMU) would keep the pipes open.
        let deadline = (start + self.timeout).max(Instant::now() + Duration::from_secs(10));
        let stdout = join_bounded(out, deadline, &shown, "stdout");
        let stderr = join_bounded(err, deadline, &shown, "stderr");
        let Some(code) = status.code() else {
            panic!(
                "{shown} died of a signal ({status})\n--- stderr ---\n{}",
                String::from_utf8_lossy(&stderr)
            );
        };
        Output {
            code,
            stdout,
            stderr,
            elapsed,
            max_rss_kb,
        }
    }
}

/// The peak resident memory of process `pid` so far (`VmHWM`), in KiB; 0
/// once it is gone. Sampled while a run goes on: the rusage of a reaped
/// virtrun would count QEMU, which it reaped, too.
fn peak_rss_kb(pid: u32) -> i64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

fn join_bounded(
    reader: thread::JoinHandle<std::io::Result<Vec<u8>>>,
    deadline: Instant,
    shown: &str,
    what: &str,
) -> Vec<u8> {
    while !reader.is_finished() {
        assert!(
            Instant::now() < deadline,
            "timeout: {what} of {shown} stayed open after virtrun exited (leaked child process?)"
        );
        thread::sleep(Duration::from_millis(10));
    }
    reader.join().unwrap().unwrap()
}

/// A fresh empty directory to use as `TMPDIR`.
pub fn empty_tmpdir() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

/// Asserts that `dir` has no entries.
#[track_caller]
pub fn assert_empty_dir(dir: &Path) {
    let left: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert!(
        left.is_empty(),
        "temp files left behind in {}: {left:?}",
        dir.display()
    );
}

/// A child process that is killed and reaped when dropped: a test that
/// fails half-way leaves no virtrun (and no QEMU) behind.
pub struct KillOnDrop(pub std::process::Child);

impl std::ops::Deref for KillOnDrop {
    type Target = std::process::Child;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl std::ops::DerefMut for KillOnDrop {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.0
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}
