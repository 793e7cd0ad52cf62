//! End-to-end tests that boot the Debian kernel under QEMU (TCG) with our init,
//! one guest per test. Each test is independent, so libtest runs them in
//! parallel. Most use the default transport (pci: virtio serial ports, with the
//! virtio modules loaded from the kernel's own module tree); the stream tests
//! also run over the ISA UARTs (`-transport isa`).

mod common;

use common::{
    DEVICE_NODES, LINUX_SYSTEM, MODULES_ON_DEMAND, assert_empty_dir, contains, empty_tmpdir,
    job_output, kernel, payload, virtrun, virtrun_bare,
};
use std::ffi::OsString;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const ENV_OUTPUT: &[u8] = b"HOME=/\nTERM=linux\nPATH=/data\n";

// --- 1. environment -----------------------------------------------------------

#[test]
fn env_sees_exactly_home_term_path() {
    virtrun(["/usr/bin/env"])
        .run()
        .assert_code(0)
        .assert_stdout(ENV_OUTPUT);
}

/// Without `-kernel`, the cache's kernel for the binary's architecture
/// (`kernels/amd64/vmlinuz`, made by scripts/setup) boots.
#[test]
fn without_kernel_flag_the_caches_kernel_boots() {
    let cached = common::cache_dir().join("kernels/amd64/vmlinuz");
    let out = virtrun_bare(["-nokvm", "-debug", "/usr/bin/env"]).run();
    out.assert_code(0).assert_stdout(ENV_OUTPUT);
    out.assert_stderr_contains(&format!("no -kernel: found Found {{ image: {cached:?}"));
}

// --- 2. exit codes -------------------------------------------------------------

#[test]
fn env_over_isa_uarts() {
    virtrun(["/usr/bin/env"])
        .transport("isa")
        .run()
        .assert_code(0)
        .assert_stdout(ENV_OUTPUT);
}

/// The hermetic guest is the minimal Linux system programs assume: the
/// binary is a job in a session it does not lead, root and nobody
/// have names, the host has one, POSIX shared memory and pseudo-terminals
/// work, and `/tmp` and `/var/tmp` are writable by anyone.
#[test]
fn hermetic_guest_is_a_minimal_linux_system() {
    virtrun([payload("system")])
        .run()
        .assert_code(0)
        .assert_stdout(LINUX_SYSTEM.as_bytes());
}

/// A test binary is a job, as under a harness on a host: a pseudo-terminal
/// it opens and closes does not hang it up, and it runs itself again
/// through `argv[0]`: its link in `/data`, which keeps its name.
#[test]
fn the_binary_is_a_job_that_can_run_itself_again() {
    virtrun([payload("job")])
        .run()
        .assert_code(0)
        .assert_stdout(job_output("/data/job").as_bytes());
}

/// The device nodes of modular drivers exist from boot, as on a host, and
/// opening one loads its module: a TUN device with no `-addModule`.
#[test]
fn device_nodes_of_modules_exist_from_boot() {
    virtrun([payload("devnodes")])
        .run()
        .assert_code(0)
        .assert_stdout(DEVICE_NODES.as_bytes());
}

/// A server on the host's loopback that answers one request with
/// `pong: ` and the request; its port.
fn pong_server() -> (u16, std::thread::JoinHandle<()>) {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().unwrap();
        let mut request = String::new();
        conn.read_to_string(&mut request).unwrap();
        conn.write_all(format!("pong: {request}").as_bytes())
            .unwrap();
    });
    (port, server)
}

/// `-net user`: a NIC configured as on a host of QEMU's user network; a
/// server on the host's loopback answers through the gateway. Without it
/// the guest has loopback only.
#[test]
fn user_network_reaches_the_hosts_loopback() {
    let (port, server) = pong_server();
    virtrun([
        "-net".into(),
        "user".into(),
        payload("net"),
        "10.0.2.2".into(),
        port.to_string().into(),
    ])
    .run()
    .assert_code(0)
    .assert_stdout(
        b"interfaces: eth0 lo\n\
              resolv.conf: nameserver 10.0.2.3\n\
              answer: pong: ping from the guest\n",
    );
    server.join().unwrap();
    virtrun([payload("net")])
        .run()
        .assert_code(0)
        .assert_stdout(b"interfaces: lo\nresolv.conf: none\n");
}

/// What the kernel asks for is loaded from its module tree, no
/// `-addModule` needed: a veth pair over rtnetlink, an AF_ALG hash. A kind
/// of link no module provides fails as on any system, at once.
#[test]
fn modules_load_on_demand() {
    virtrun([payload("kmods")])
        .run()
        .assert_code(0)
        .assert_stdout(MODULES_ON_DEMAND.as_bytes());
}

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

/// bash found through `PATH=/data`, in the working directory `/`.
#[test]
fn added_dynamic_bash_runs_through_path() {
    virtrun([
        "-addFile",
        "/usr/bin/bash",
        "/usr/bin/env",
        "bash",
        "-c",
        "echo ok; pwd; exit 3",
    ])
    .run()
    .assert_code(3)
    .assert_stdout(b"ok\n/\n");
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
fn stdout_and_stderr_over_isa_uarts() {
    let out = virtrun([payload("bytes")]).transport("isa").run();
    let all: Vec<u8> = (0..=255u8).collect();
    out.assert_code(0).assert_stdout(&all);
    out.assert_stderr_contains("only on stderr\n");
    assert!(!contains(&out.stdout, b"only on stderr"));
}

/// What flood.c writes for `n`: 64 KiB writes of 'a'..'z' repeating (each
/// write starts again at 'a'), then a newline.
fn flood_output(n: usize) -> Vec<u8> {
    let chunk: Vec<u8> = (0..65536).map(|i| b'a' + (i % 26) as u8).collect();
    let mut expected = Vec::with_capacity(n + 1);
    while expected.len() < n {
        let take = (n - expected.len()).min(chunk.len());
        expected.extend_from_slice(&chunk[..take]);
    }
    expected.push(b'\n');
    expected
}

#[test]
fn stdout_carries_a_32_mib_line_over_virtio() {
    const N: usize = 32 << 20;
    let flood = payload("flood");
    let out = virtrun([flood.as_os_str(), N.to_string().as_ref()]).run();
    out.assert_code(0).assert_stdout(&flood_output(N));
}

#[test]
fn stdout_carries_a_4_mib_line_over_isa() {
    const N: usize = 4 << 20;
    let flood = payload("flood");
    let out = virtrun([flood.as_os_str(), N.to_string().as_ref()])
        .transport("isa")
        .run();
    out.assert_code(0).assert_stdout(&flood_output(N));
}

/// What streams.c writes to one stream: byte i is (i * mul + add) % modulus.
fn stream_bytes(n: usize, mul: usize, add: usize, modulus: usize) -> Vec<u8> {
    (0..n).map(|i| ((i * mul + add) % modulus) as u8).collect()
}

fn streams(transport: Option<&'static str>, out: usize, err: usize) {
    let mut run = virtrun([
        payload("streams").into_os_string(),
        out.to_string().into(),
        err.to_string().into(),
    ])
    // 20 MiB over the ISA UARTs take minutes on a loaded machine.
    .timeout(std::time::Duration::from_secs(600));
    if let Some(t) = transport {
        run = run.transport(t);
    }
    let result = run.run();
    result
        .assert_code(0)
        .assert_stdout(&stream_bytes(out, 31, 7, 251));
    assert!(
        result.stderr == stream_bytes(err, 17, 3, 241),
        "stderr differs: {} bytes, want {err}",
        result.stderr.len()
    );
}

#[test]
fn stdout_100_mb_and_stderr_10_mb_over_virtio() {
    streams(None, 100_000_000, 10_000_000);
}

#[test]
fn stdout_16_mib_and_stderr_4_mib_over_isa() {
    streams(Some("isa"), 16 << 20, 4 << 20);
}

#[test]
fn stdout_500_lines_of_64_kib() {
    const LEN: usize = 64 * 1024;
    let out = virtrun([
        payload("lines").into_os_string(),
        "500".into(),
        LEN.to_string().into(),
    ])
    .run();
    let mut expected = Vec::with_capacity(500 * LEN);
    for k in 0..500 {
        expected.extend(std::iter::repeat_n(b'A' + (k % 26) as u8, LEN - 1));
        expected.push(b'\n');
    }
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
fn stdin_200_kib_over_isa_is_flow_controlled() {
    let input: Vec<u8> = (0..200 * 1024).map(|i| (i * 7 % 256) as u8).collect();
    virtrun(["/usr/bin/cat"])
        .transport("isa")
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

// --- KVM ----------------------------------------------------------------------------

/// These machines have a /dev/kvm that opens but cannot run a Linux guest:
/// virtrun must find out by itself and fall back to emulation.
#[test]
fn broken_kvm_is_detected_and_emulation_takes_over() {
    let cache = empty_tmpdir(); // no marker from earlier runs
    let tmp = empty_tmpdir();
    for cpu in ["max", "qemu64"] {
        let out = virtrun_bare([
            OsString::from("-cpu"),
            cpu.into(),
            "-kernel".into(),
            kernel().into(),
            "/usr/bin/env".into(),
        ])
        .env("VIRTRUN_CACHE", cache.path())
        .tmpdir(tmp.path())
        .run();
        out.assert_code(0).assert_stdout(ENV_OUTPUT);
        let stderr = out.stderr_text();
        assert!(
            stderr.is_empty() || stderr.starts_with("virtrun: warning: KVM is not usable here"),
            "unexpected stderr: {stderr}"
        );
        eprintln!("-cpu {cpu} without -nokvm: {:?}", out.elapsed);
        // The second CPU model must not find the verdict of the first.
        for marker in std::fs::read_dir(cache.path()).unwrap() {
            std::fs::remove_file(marker.unwrap().path()).unwrap();
        }
    }
    assert_empty_dir(tmp.path());
}

// --- kernel modules ----------------------------------------------------------------

#[test]
fn add_module_by_name_and_by_path() {
    let tree = kernel().canonicalize().unwrap();
    let release_dir = tree.parent().unwrap().parent().unwrap().join("lib/modules");
    let release = std::fs::read_dir(&release_dir)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let dummy = release.join("kernel/drivers/net/dummy.ko");
    assert!(dummy.is_file(), "{} missing", dummy.display());
    // By name (resolved from the tree next to the kernel) and by path.
    for module in [OsString::from("dummy"), dummy.into_os_string()] {
        let out = virtrun([
            OsString::from("-addModule"),
            module,
            "/usr/bin/cat".into(),
            "/proc/modules".into(),
        ])
        .run();
        out.assert_code(0);
        let modules = out.stdout_text();
        assert!(
            modules.lines().any(|l| l.starts_with("dummy ")),
            "dummy not loaded:\n{modules}"
        );
        // The transport's own drivers came first.
        assert!(modules.lines().any(|l| l.starts_with("virtio_console ")));
    }
}

/// The init loads the modules before it opens its channels (the virtio
/// drivers among them are modules): one that fails to load is still
/// reported, in one line, with the reason.
#[test]
fn a_module_that_fails_to_load_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let bogus = dir.path().join("bogus.ko");
    std::fs::write(&bogus, "not a module\n").unwrap();
    let out = virtrun([
        OsString::from("-addModule"),
        bogus.into_os_string(),
        "/usr/bin/true".into(),
    ])
    .run();
    out.assert_code(255);
    let line = out.assert_one_line();
    assert!(
        line.starts_with("virtrun: guest init failed: load module /lib/modules/")
            && line.ends_with("-bogus.ko: Exec format error (os error 8)\n"),
        "{line}"
    );
}

#[test]
fn add_module_veth_by_name_pulls_its_dependencies() {
    // ip is dynamic: its libraries come along. veth needs its dependencies
    // loaded first, which only the module tree knows.
    virtrun([
        "-addModule",
        "veth",
        "/usr/sbin/ip",
        "link",
        "add",
        "type",
        "veth",
    ])
    .run()
    .assert_code(0)
    .assert_stdout(b"");
}

// --- timeout and signals -----------------------------------------------------------

/// Whether any process still mentions `dir` on its command line (a QEMU whose
/// initramfs lives there).
fn process_mentions(dir: &Path) -> bool {
    let needle = dir.as_os_str().as_encoded_bytes();
    std::fs::read_dir("/proc").unwrap().flatten().any(|e| {
        std::fs::read(e.path().join("cmdline"))
            .is_ok_and(|c| c.windows(needle.len()).any(|w| w == needle))
    })
}

#[test]
fn timeout_stops_a_guest_that_never_ends() {
    let tmp = empty_tmpdir();
    let out = virtrun([
        OsString::from("-timeout"),
        "20s".into(),
        payload("sleep").into(),
    ])
    .tmpdir(tmp.path())
    .run();
    out.assert_code(124).assert_stdout(b"ready\n");
    out.assert_stderr_contains("timed out after 20s while running the binary");
    assert!(
        out.elapsed < Duration::from_secs(25),
        "took {:?}",
        out.elapsed
    );
    assert_empty_dir(tmp.path());
    assert!(!process_mentions(tmp.path()), "QEMU left running");
}

#[test]
fn sigint_reaches_the_binary_and_ends_the_run() {
    let tmp = empty_tmpdir();
    let mut child = Command::new(env!("CARGO_BIN_EXE_virtrun"))
        .args(["-nokvm", "-kernel"])
        .arg(kernel())
        .arg(payload("sigint"))
        .env("TMPDIR", tmp.path())
        .env("VIRTRUN_ARGS", common::suite_args())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    assert_eq!(line, "ready\n", "payload did not start");
    // SAFETY: kill(2) on our own child; no memory involved.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGINT) }, 0);
    let start = Instant::now();
    let mut rest = String::new();
    stdout.read_to_string(&mut rest).unwrap();
    let status = child.wait().unwrap();
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert_eq!(rest, "got SIGINT\n", "stderr: {stderr}");
    assert_eq!(status.code(), Some(130), "stderr: {stderr}");
    assert!(stderr.contains("SIGINT"), "stderr: {stderr}");
    assert!(start.elapsed() < Duration::from_secs(10));
    assert_empty_dir(tmp.path());
    assert!(!process_mentions(tmp.path()), "QEMU left running");
}
