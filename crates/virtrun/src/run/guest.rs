//! What the default init is told: the run's guest configuration and the
//! binary's environment.

use crate::config::Config;
use crate::pack::{gotest, initramfs, share};
use crate::trace::Trace;
use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};
use virtrun_protocol::{GuestConfig, WindowSize};

/// Variables passed to the binary when set on the host: what test harnesses
/// and runtimes read to change how they report.
pub const FORWARDED_ENV: [&str; 7] = [
    "RUST_BACKTRACE",
    "RUST_LIB_BACKTRACE",
    "RUST_LOG",
    "RUST_TEST_THREADS",
    "LLVM_PROFILE_FILE",
    "GOTRACEBACK",
    "GODEBUG",
];

/// The binary's extra environment: the forwarded variables set on the host,
/// then `-env` (`KEY=VALUE`, or `KEY` for the host's value). An
/// `LLVM_PROFILE_FILE` is pointed into the guest, and its directory comes
/// back to the host like go test's files.
pub(super) fn guest_env(
    flags: &[OsString],
    cwd: &Path,
    outputs: &mut Vec<gotest::Output>,
) -> Vec<Vec<u8>> {
    let mut vars: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
    let mut set = |key: &[u8], value: Vec<u8>| {
        vars.retain(|(k, _)| k != key);
        vars.push((key.to_vec(), value));
    };
    for key in FORWARDED_ENV {
        if let Some(value) = std::env::var_os(key) {
            set(key.as_bytes(), value.into_vec());
        }
    }
    for flag in flags {
        let b = flag.as_bytes();
        match b.iter().position(|&c| c == b'=') {
            Some(i) => set(&b[..i], b[i + 1..].to_vec()),
            None => {
                if let Some(value) = std::env::var_os(OsStr::from_bytes(b)) {
                    set(b, value.into_vec());
                }
            }
        }
    }
    for (key, value) in &mut vars {
        if key == b"LLVM_PROFILE_FILE" && !value.is_empty() {
            let host = cwd.join(OsStr::from_bytes(value));
            let pattern = host
                .file_name()
                .map(OsStr::to_os_string)
                .unwrap_or_default();
            let guest_dir = Path::new(gotest::GUEST_DIR).join("llvm-profile");
            *value = guest_dir.join(pattern).into_os_string().into_vec();
            outputs.push(gotest::Output {
                guest: guest_dir,
                host: host.parent().unwrap_or(cwd).to_path_buf(),
                dir: true,
            });
        }
    }
    vars.into_iter()
        .map(|(mut k, v)| {
            k.push(b'=');
            k.extend(v);
            k
        })
        .collect()
}

/// The binary's `argv[0]`: a path the guest can execute, so that a binary
/// can run itself again through it (as Go's tests do with `os.Args[0]`),
/// and with the binary's own base name (busybox picks its applet by it):
/// in the hermetic guest the binary's link in `/data`
/// ([`initramfs::main_link`]), else `/main`; under `-hostRoot` the path
/// virtrun was given, made absolute, as a host would run it, unless that
/// path is not the one the guest has it at.
fn argv0(config: &Config, shares: &share::Shares) -> PathBuf {
    match &shares.exec {
        Some(exec) if shares.bind_main && *exec != config.binary => exec.clone(),
        Some(_) => config.binary.clone(),
        None => initramfs::main_link(&config.binary, &config.add_files)
            .map_or_else(|| PathBuf::from(virtrun_protocol::MAIN_PATH), PathBuf::from),
    }
}

/// What the default init is told; adds the environment's output files
/// (`LLVM_PROFILE_FILE`) to `outputs`.
pub(super) fn guest_config(
    config: &Config,
    args: &[OsString],
    cwd: &Path,
    shares: &share::Shares,
    outputs: &mut Vec<gotest::Output>,
    tty: Option<WindowSize>,
    trace: &Trace,
) -> GuestConfig {
    // A standalone init has no configuration file to take an environment
    // from, and its outputs are the ports. A -hostRoot binary gets the
    // host's environment, then what is set for every guest.
    let env = if config.standalone {
        Vec::new()
    } else if config.host_root {
        let mut env: Vec<Vec<u8>> = std::env::vars_os()
            .filter(|(k, _)| !super::matrix::ENV.iter().any(|m| k == m))
            .map(|(k, v)| {
                let mut kv = k.into_vec();
                kv.push(b'=');
                kv.extend(v.into_vec());
                kv
            })
            .collect();
        env.extend(guest_env(&config.env, cwd, outputs));
        env
    } else {
        guest_env(&config.env, cwd, outputs)
    };
    trace.log(|| {
        let env: Vec<_> = env.iter().map(|v| String::from_utf8_lossy(v)).collect();
        format!("guest environment {env:?}, files to bring back {outputs:?}")
    });
    GuestConfig {
        argv0: argv0(config, shares).as_os_str().as_bytes().to_vec(),
        args: args.iter().map(|a| a.as_bytes().to_vec()).collect(),
        env,
        outputs: outputs
            .iter()
            .map(|o| o.guest.as_os_str().as_bytes().to_vec())
            .collect(),
        verbose: config.verbose,
        host_root: config.host_root,
        shares: shares
            .writable
            .iter()
            .map(|p| p.as_os_str().as_bytes().to_vec())
            .collect(),
        cwd: shares
            .cwd
            .as_ref()
            .map_or_else(Vec::new, |c| c.as_os_str().as_bytes().to_vec()),
        exec: shares
            .exec
            .as_ref()
            .map_or_else(Vec::new, |e| e.as_os_str().as_bytes().to_vec()),
        bind_main: shares.bind_main,
        tty,
    }
}
