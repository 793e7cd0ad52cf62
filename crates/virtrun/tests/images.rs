//! Kernels as the ecosystem keeps them: OCI images pulled from a real
//! registry (Debian's `docker-registry`, the CNCF distribution registry,
//! started here on a free loopback port; images pushed with
//! `scripts/kernel-image` and `skopeo`, holding Debian's kernels), kernel
//! directories, and many kernels in one command (`-kernels`).
//!
//! Each test that pulls has a cache of its own (`VIRTRUN_CACHE`), so what
//! it finds there is what it pulled.

mod common;

use common::{
    DEVICE_NODES, MODULES_ON_DEMAND, busybox, cache_dir, contains, kernel_of, payload, virtrun_bare,
};
use std::ffi::OsString;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A registry on the loopback, its storage in a temporary directory.
struct Registry {
    child: Option<Child>,
    port: u16,
    storage: tempfile::TempDir,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Registry {
    fn start() -> Registry {
        let storage = tempfile::tempdir().unwrap();
        let port = free_port();
        let config = storage.path().join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {}\n\
                 http:\n  addr: 127.0.0.1:{port}\nlog:\n  level: error\n",
                storage.path().join("data").display()
            ),
        )
        .unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("docker-registry (scripts/setup installs it)");
        let registry = Registry {
            child: Some(child),
            port,
            storage,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while http_get(port, "/v2/", "").0 != 200 {
            assert!(Instant::now() < deadline, "the registry did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        registry
    }

    /// `127.0.0.1:PORT/name`.
    fn reference(&self, name: &str) -> String {
        format!("127.0.0.1:{}/{name}", self.port)
    }

    /// Packs `kernels` (arch, extracted directory) as image `name` and
    /// pushes it; returns its reference.
    fn push(&self, name: &str, kernels: &[(&str, PathBuf)]) -> String {
        let reference = self.reference(name);
        push_image(&reference, kernels);
        reference
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        self.stop();
    }
}

fn push_image(reference: &str, kernels: &[(&str, PathBuf)]) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/kernel-image");
    let mut cmd = Command::new(script);
    for (arch, dir) in kernels {
        let mut arg = OsString::from(format!("{arch}="));
        arg.push(dir);
        cmd.arg(arg);
    }
    let out = cmd.args(["--push", reference]).output().unwrap();
    assert!(
        out.status.success(),
        "kernel-image failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A GET over plain HTTP on the loopback: the status and the body.
fn http_get(port: u16, path: &str, headers: &str) -> (u16, Vec<u8>) {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return (0, Vec::new());
    };
    let _ = write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n{headers}Connection: close\r\n\r\n"
    );
    let mut answer = Vec::new();
    let _ = s.read_to_end(&mut answer);
    let status = String::from_utf8_lossy(&answer)
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, answer)
}

/// An extracted Debian kernel package of the cache (`scripts/setup`).
fn package(arch: &str) -> PathBuf {
    cache_dir().join("kernels").join(arch).join("current")
}

/// `virtrun -nokvm ARGS` with the cache `cache`.
fn pulling(cache: &Path, args: &[&dyn AsRef<std::ffi::OsStr>]) -> common::Virtrun {
    let mut argv: Vec<OsString> = vec!["-nokvm".into()];
    argv.extend(args.iter().map(|a| a.as_ref().to_owned()));
    virtrun_bare(argv).env("VIRTRUN_CACHE", cache)
}

/// What a failed pull leaves in the cache: nothing pulled, no pull left.
fn assert_nothing_pulled(cache: &Path) {
    let images = cache.join("images");
    let kernels: Vec<_> = std::fs::read_dir(images.join("kernels"))
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(kernels.is_empty(), "kept: {kernels:?}");
    let pulls: Vec<_> = std::fs::read_dir(&images)
        .map(|d| {
            d.flatten()
                .filter(|e| e.file_name().to_string_lossy().starts_with(".pull-"))
                .map(|e| e.path())
                .collect()
        })
        .unwrap_or_default();
    assert!(pulls.is_empty(), "left: {pulls:?}");
}

/// A cloud kernel's image (its virtio drivers are modules, which must
/// come from the image) pulls and runs, modules on demand and device nodes
/// included. The second run asks nothing of the registry (its tag was
/// resolved within the hour): with the registry stopped it runs without a
/// word; with the tag due for a check (`VIRTRUN_TAG_TTL=0`) it runs from
/// what was pulled and says so in one line.
#[test]
fn a_pulled_kernel_runs_and_runs_again_offline() {
    let mut registry = Registry::start();
    let image = registry.push("kernels/cloud:6.1", &[("amd64", package("amd64"))]);
    let cache = tempfile::tempdir().unwrap();
    pulling(cache.path(), &[&"-kernel", &image, &payload("kmods")])
        .run()
        .assert_code(0)
        .assert_stdout(MODULES_ON_DEMAND.as_bytes());
    registry.stop();
    let again = pulling(cache.path(), &[&"-kernel", &image, &payload("devnodes")]).run();
    again.assert_code(0).assert_stdout(DEVICE_NODES.as_bytes());
    assert!(
        !contains(&again.stderr, b"cannot be reached"),
        "{}",
        again.stderr_text()
    );
    let due = pulling(cache.path(), &[&"-kernel", &image, &payload("devnodes")])
        .env("VIRTRUN_TAG_TTL", "0")
        .run();
    due.assert_code(0).assert_stdout(DEVICE_NODES.as_bytes());
    let line = due.assert_one_line();
    assert!(
        line.starts_with(&format!(
            "virtrun: 127.0.0.1:{} cannot be reached: using {image} as pulled",
            registry.port
        )),
        "{line}"
    );
}

/// An index with an amd64 and an arm64 manifest serves each binary the
/// kernel of its architecture; a plain manifest of another architecture is
/// refused.
#[test]
fn an_index_serves_each_architecture() {
    let registry = Registry::start();
    let index = registry.push(
        "kernels/multi:6.1",
        &[("amd64", package("amd64")), ("arm64", package("arm64"))],
    );
    let arm_only = registry.push("kernels/arm:6.1", &[("arm64", package("arm64"))]);
    let cache = tempfile::tempdir().unwrap();
    pulling(cache.path(), &[&"-kernel", &index, &payload("exit"), &"0"])
        .run()
        .assert_code(0);
    pulling(
        cache.path(),
        &[
            &"-kernel",
            &index,
            &busybox("arm64"),
            &"echo",
            &"arm64 guest",
        ],
    )
    .run()
    .assert_code(0)
    .assert_stdout(b"arm64 guest\n");
    let other = pulling(
        cache.path(),
        &[&"-kernel", &arm_only, &payload("exit"), &"0"],
    )
    .run();
    other.assert_code(255);
    let line = other.assert_one_line();
    assert!(
        line.contains("an image for arm64, not for the binary's amd64"),
        "{line}"
    );
}

/// A blob whose bytes were altered in the registry's storage: 255, one
/// line naming its digest, nothing kept.
#[test]
fn a_blob_that_does_not_match_its_digest_is_refused() {
    let registry = Registry::start();
    let image = registry.push("kernels/altered:6.1", &[("amd64", package("amd64"))]);
    // The layer is the largest blob; one byte of it changes.
    let blobs = registry
        .storage
        .path()
        .join("data/docker/registry/v2/blobs/sha256");
    let mut largest: Option<(u64, PathBuf)> = None;
    for prefix in std::fs::read_dir(&blobs).unwrap().flatten() {
        for blob in std::fs::read_dir(prefix.path()).unwrap().flatten() {
            let data = blob.path().join("data");
            let len = std::fs::metadata(&data).unwrap().len();
            if largest.as_ref().is_none_or(|(l, _)| len > *l) {
                largest = Some((len, data));
            }
        }
    }
    let (_, data) = largest.unwrap();
    let digest = format!(
        "sha256:{}",
        data.parent()
            .unwrap()
            .file_name()
            .unwrap()
            .to_string_lossy()
    );
    let mut bytes = std::fs::read(&data).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&data, bytes).unwrap();
    let cache = tempfile::tempdir().unwrap();
    let out = pulling(cache.path(), &[&"-kernel", &image, &payload("exit"), &"0"]).run();
    out.assert_code(255);
    let line = out.assert_one_line();
    assert!(
        line.contains(&format!("blob {digest}: its bytes do not match its digest")),
        "{line}"
    );
    assert_nothing_pulled(cache.path());
}

/// An OCI image of one layer with `files` (path, content), for `arch`,
/// written as a layout and pushed as `reference`.
fn push_files(reference: &str, arch: &str, files: &[(&str, &[u8])]) {
    use sha2::{Digest, Sha256};
    let layout = tempfile::tempdir().unwrap();
    let blobs = layout.path().join("blobs/sha256");
    std::fs::create_dir_all(&blobs).unwrap();
    let blob = |bytes: &[u8], media: &str| {
        let digest = format!("{:x}", Sha256::digest(bytes));
        std::fs::write(blobs.join(&digest), bytes).unwrap();
        serde_json::json!({"mediaType": media, "digest": format!("sha256:{digest}"), "size": bytes.len()})
    };
    let mut tar = tar::Builder::new(Vec::new());
    for (path, content) in files {
        let mut h = tar::Header::new_gnu();
        h.set_size(content.len() as u64);
        h.set_mode(0o644);
        tar.append_data(&mut h, path, *content).unwrap();
    }
    let tar = tar.into_inner().unwrap();
    let layer = blob(&tar, "application/vnd.oci.image.layer.v1.tar");
    let config = blob(
        serde_json::json!({"architecture": arch, "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": [layer["digest"]]}})
        .to_string()
        .as_bytes(),
        "application/vnd.oci.image.config.v1+json",
    );
    let manifest = blob(
        serde_json::json!({"schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": config, "layers": [layer]})
        .to_string()
        .as_bytes(),
        "application/vnd.oci.image.manifest.v1+json",
    );
    let mut top = manifest;
    top["annotations"] = serde_json::json!({"org.opencontainers.image.ref.name": "t"});
    std::fs::write(
        layout.path().join("index.json"),
        serde_json::json!({"schemaVersion": 2, "manifests": [top]}).to_string(),
    )
    .unwrap();
    std::fs::write(
        layout.path().join("oci-layout"),
        r#"{"imageLayoutVersion":"1.0.0"}"#,
    )
    .unwrap();
    let status = Command::new("skopeo")
        .args(["copy", "--quiet", "--dest-tls-verify=false"])
        .arg(format!("oci:{}:t", layout.path().display()))
        .arg(format!("docker://{reference}"))
        .status()
        .unwrap();
    assert!(status.success(), "skopeo copy to {reference}");
}

/// What cannot be pulled is one line and 255, within seconds, and leaves
/// nothing: an unknown tag, an image without `/boot/vmlinuz`, a registry
/// nobody listens on.
#[test]
fn what_cannot_be_pulled_is_one_line_each() {
    let registry = Registry::start();
    let no_kernel = registry.reference("kernels/empty:1");
    push_files(&no_kernel, "amd64", &[("etc/hostname", b"not a kernel\n")]);
    let cache = tempfile::tempdir().unwrap();
    let dead = format!("127.0.0.1:{}/kernels/cloud:6.1", free_port());
    let cases = [
        (registry.reference("kernels/cloud:nope"), "404"),
        (no_kernel, "no /boot/vmlinuz in the image"),
        (dead, "cannot reach it"),
    ];
    for (image, words) in cases {
        let start = Instant::now();
        let out = pulling(cache.path(), &[&"-kernel", &image, &payload("exit"), &"0"]).run();
        out.assert_code(255);
        let line = out.assert_one_line();
        assert!(line.contains(&image) && line.contains(words), "{line}");
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "{image}: too slow"
        );
    }
    assert_nothing_pulled(cache.path());
}

/// A stand-in for a registry that wants tokens, in front of a real one: a
/// request without `Bearer t0k3n` gets a `401` with a bearer challenge whose
/// realm hands out the token for the credentials `virtrun:secret` only;
/// with the token, requests go to the registry. Returns its port and what
/// it saw.
fn token_stand_in(upstream: u16) -> (u16, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&seen);
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            let log = Arc::clone(&log);
            std::thread::spawn(move || serve_stand_in(conn, port, upstream, &log));
        }
    });
    (port, seen)
}

fn serve_stand_in(mut conn: TcpStream, port: u16, upstream: u16, log: &Mutex<Vec<String>>) {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if conn.read(&mut byte).unwrap_or(0) == 0 {
            return;
        }
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    let path = head.split_whitespace().nth(1).unwrap_or("/").to_string();
    let header = |name: &str| {
        head.lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
            })
            .unwrap_or_default()
    };
    let reply = |conn: &mut TcpStream, status: &str, extra: &str, body: &str| {
        let _ = write!(
            conn,
            "HTTP/1.1 {status}\r\nContent-Length: {}\r\nContent-Type: application/json\r\n{extra}Connection: close\r\n\r\n{body}",
            body.len()
        );
    };
    if path.starts_with("/token") {
        let ok = header("authorization") == "Basic dmlydHJ1bjpzZWNyZXQ=";
        log.lock().unwrap().push(format!("token {ok} {path}"));
        if ok {
            reply(&mut conn, "200 OK", "", r#"{"token":"t0k3n"}"#);
        } else {
            reply(&mut conn, "401 Unauthorized", "", "{}");
        }
        return;
    }
    if header("authorization") != "Bearer t0k3n" {
        log.lock().unwrap().push(format!("challenge {path}"));
        let challenge = format!(
            "WWW-Authenticate: Bearer realm=\"http://127.0.0.1:{port}/token\",service=\"stand-in\",scope=\"repository:kernels/cloud:pull\"\r\n"
        );
        reply(&mut conn, "401 Unauthorized", &challenge, "{}");
        return;
    }
    log.lock().unwrap().push(format!("bearer {path}"));
    let accept = header("accept");
    let Ok(mut up) = TcpStream::connect(("127.0.0.1", upstream)) else {
        return;
    };
    let _ = write!(
        up,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{upstream}\r\nAccept: {accept}\r\nConnection: close\r\n\r\n"
    );
    let _ = std::io::copy(&mut up, &mut conn);
}

/// The token flow (401 → token from the realm → the request again) with
/// credentials read from an auth file (`REGISTRY_AUTH_FILE`); two runs of
/// the same image at once download it once.
#[test]
fn a_registry_that_wants_a_token_and_credentials() {
    let registry = Registry::start();
    registry.push("kernels/cloud:6.1", &[("amd64", package("amd64"))]);
    let (port, seen) = token_stand_in(registry.port);
    let auth = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        auth.path(),
        format!(r#"{{"auths":{{"127.0.0.1:{port}":{{"auth":"dmlydHJ1bjpzZWNyZXQ="}}}}}}"#),
    )
    .unwrap();
    let image = format!("127.0.0.1:{port}/kernels/cloud:6.1");
    let cache = tempfile::tempdir().unwrap();
    // Two runs at once download the image once.
    let runs: Vec<_> = (0..2)
        .map(|_| {
            let (cache, image, auth) = (
                cache.path().to_owned(),
                image.clone(),
                auth.path().to_owned(),
            );
            std::thread::spawn(move || {
                pulling(&cache, &[&"-kernel", &image, &payload("exit"), &"3"])
                    .env("REGISTRY_AUTH_FILE", &auth)
                    .run()
            })
        })
        .collect();
    for run in runs {
        run.join().unwrap().assert_code(3);
    }
    let seen = seen.lock().unwrap().clone();
    let blobs: Vec<&String> = seen.iter().filter(|s| s.contains("/blobs/")).collect();
    let mut unique = blobs.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(blobs.len(), unique.len(), "a blob fetched twice: {seen:?}");
    assert!(
        seen.first().is_some_and(|s| s.starts_with("challenge ")),
        "{seen:?}"
    );
    assert!(
        seen.iter().any(|s| s.starts_with("token true ")
            && s.contains("service=stand-in")
            && s.contains("scope=repository%3Akernels%2Fcloud%3Apull")),
        "{seen:?}"
    );
    assert!(
        seen.iter()
            .any(|s| s.starts_with("bearer /v2/kernels/cloud/blobs/")),
        "{seen:?}"
    );
}

/// `-kernel` naming an extracted Debian kernel package runs as the image
/// file inside it does, its modules found in it.
#[test]
fn a_kernel_directory_runs_as_its_file() {
    let dir = package("amd64");
    virtrun_bare([
        OsString::from("-nokvm"),
        "-kernel".into(),
        dir.into(),
        payload("kmods").into(),
    ])
    .run()
    .assert_code(0)
    .assert_stdout(MODULES_ON_DEMAND.as_bytes());
}

/// `-hostRoot` without `-kernel`: the cache's default kernel (the cloud
/// one) has no 9p, so the cache's generic kernel runs it.
#[test]
fn host_root_without_a_kernel_takes_one_with_9p() {
    let repo = tempfile::tempdir().unwrap();
    std::fs::create_dir(repo.path().join(".git")).unwrap();
    virtrun_bare(["-nokvm", "-hostRoot", "/bin/sh", "-c", "echo ok"])
        .cwd(repo.path())
        .run()
        .assert_code(0)
        .assert_stdout(b"ok\n");
}

/// A matrix over the cloud kernel, the generic kernel and a pulled image:
/// every run's output, the first live, the others after it in list order
/// with a header line; a table naming each kernel's release; the exit code
/// of the one kernel the payload fails on.
#[test]
fn a_matrix_of_three_kernels() {
    let registry = Registry::start();
    let image = registry.push("kernels/cloud:6.1", &[("amd64", package("amd64"))]);
    let cache = tempfile::tempdir().unwrap();
    let list = format!(
        "{},{},{image}",
        kernel_of("amd64").display(),
        kernel_of("amd64-generic").display()
    );
    let out = pulling(cache.path(), &[&"-kernels", &list, &payload("release")]).run();
    out.assert_code(7);
    let cloud = std::fs::read_link(kernel_of("amd64")).unwrap();
    let cloud_release = release_of(&cloud);
    let generic_release = release_of(&std::fs::read_link(kernel_of("amd64-generic")).unwrap());
    assert_eq!(
        out.stdout_text(),
        format!("release {cloud_release}\nrelease {generic_release}\nrelease {cloud_release}\n")
    );
    let err = out.stderr_text();
    let headers: Vec<&str> = err
        .lines()
        .filter(|l| l.contains(" ---- kernel "))
        .collect();
    assert_eq!(
        headers,
        [
            format!(
                "virtrun: ---- kernel {} ({generic_release}) ----",
                kernel_of("amd64-generic").display()
            ),
            format!("virtrun: ---- kernel {image} ({cloud_release}) ----"),
        ],
        "{err}"
    );
    let table: Vec<&str> = err
        .lines()
        .skip_while(|l| !l.contains(" kernel ") || !l.contains(" release "))
        .collect();
    assert_eq!(table.len(), 4, "{err}");
    for (row, (kernel, release, code)) in table[1..].iter().zip([
        (
            kernel_of("amd64").display().to_string(),
            &cloud_release,
            "0",
        ),
        (
            kernel_of("amd64-generic").display().to_string(),
            &generic_release,
            "7",
        ),
        (image.clone(), &cloud_release, "0"),
    ]) {
        let cells: Vec<&str> = row
            .trim_start_matches("virtrun:")
            .split_whitespace()
            .collect();
        assert_eq!(
            &cells[..3],
            [kernel.as_str(), release.as_str(), code],
            "{row}"
        );
        assert!(["warm", "cold"].contains(&cells[4]), "{row}");
    }
}

/// The release in a Debian kernel image's file name.
fn release_of(image: &Path) -> String {
    let name = image.file_name().unwrap().to_string_lossy().into_owned();
    name.split_once('-').unwrap().1.to_string()
}

/// A kernel of a list that cannot be resolved ends the command before any
/// guest boots; `-tty` and `-gdb` do not go with a list.
#[test]
fn a_matrix_refuses_what_it_cannot_run() {
    let cache = tempfile::tempdir().unwrap();
    let kernel = kernel_of("amd64");
    let list = format!("{},/no/such/kernel", kernel.display());
    let out = pulling(cache.path(), &[&"-kernels", &list, &payload("exit"), &"0"]).run();
    out.assert_code(255);
    assert_eq!(
        out.assert_one_line(),
        "virtrun: error: -kernels: /no/such/kernel: no such file\n"
    );
    let list = format!("{},{}", kernel.display(), kernel.display());
    for flag in [&["-gdb", "1234"][..], &["-tty"]] {
        let mut args: Vec<&dyn AsRef<std::ffi::OsStr>> = vec![&"-kernels", &list];
        for f in flag {
            args.push(f);
        }
        let exit = payload("exit");
        args.push(&exit);
        let out = pulling(cache.path(), &args).run();
        out.assert_code(255);
        assert!(out.assert_one_line().contains("not with -kernels"));
    }
}
