//! One run, start to end: inspect, plan, pack, boot, supervise, decide.

use crate::config::Config;
use crate::outcome::{self, Outcome};
use crate::pack::gotest;
use crate::pack::initramfs::{Content, Input, Plan};
use crate::pack::share;
use crate::target::discover;
use crate::target::elf::{self, Arch};
use crate::target::kernel::{Kernel, ModulePlan, RUN_DISK_DRIVER, needed_drivers};
use crate::target::libs::{Resolved, Resolver};
use crate::trace::{Trace, say};
use crate::vm::qemu::Invocation;
use crate::vm::snapshot::Identity;
use crate::vm::supervisor::{self, Report, Start};
use crate::vm::terminal::{self, RawMode, STDIN};
use anyhow::{Context, Result, bail};
use signal_hook::iterator::Signals;
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::BufWriter;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use virtrun_protocol::{
    BootConfig, GuestConfig, Layout, LoaderConfig, STANDALONE_PORTS, WindowSize,
};

/// The default init for each architecture, built (and LZ4-compressed) by
/// `scripts/build-guest-init`; unpacked when an archive with it is written.
fn guest_init(arch: Arch) -> Content {
    Content::Packed(match arch {
        Arch::Amd64 => include_bytes!("../guest/init-x86_64.lz4"),
        Arch::Arm64 => include_bytes!("../guest/init-aarch64.lz4"),
        Arch::Riscv64 => include_bytes!("../guest/init-riscv64.lz4"),
    })
}

/// Whether to try KVM for a guest of `arch`: the host's own architecture,
/// `/dev/kvm` usable, not disabled, and not found broken earlier since the
/// host booted.
fn use_kvm(config: &Config, arch: Arch) -> bool {
    !config.no_kvm
        && Arch::host() == Some(arch)
        && std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/kvm")
            .is_ok()
        && !kvm_known_broken().is_some_and(|p| p.exists())
}

/// A marker that KVM failed on this host since it booted, so that later runs
/// go straight to emulation instead of waiting for the watchdog again.
fn kvm_known_broken() -> Option<std::path::PathBuf> {
    let boot_id = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").ok()?;
    Some(crate::cache::dir()?.join(format!("kvm-broken-{}", boot_id.trim())))
}

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
fn guest_env(flags: &[OsString], cwd: &Path, outputs: &mut Vec<gotest::Output>) -> Vec<Vec<u8>> {
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

/// File name of the archive that `-keepInitramfs` keeps.
const KEPT_ARCHIVE: &str = "initramfs.cpio";

/// The file the archive is written to. Unnamed (never linked: QEMU reads it
/// through an inherited fd), so nothing of it is left however virtrun ends,
/// and no other user can open it. With `keep_in`, the directory of
/// `-keepInitramfs` (private to the user), a named file only the user can
/// read.
fn archive_file(keep_in: Option<&Path>) -> std::io::Result<File> {
    match keep_in {
        None => crate::scratch::unnamed(),
        Some(dir) => std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(dir.join(KEPT_ARCHIVE)),
    }
}

/// Runs `config` and returns virtrun's outcome. Host-side failures are errors
/// (exit 255); everything the guest did is in the outcome.
pub fn run(config: &Config, trace: &Trace) -> Result<Outcome> {
    let mut signals = supervisor::catch_signals(config.tty).context("catching signals")?;
    let cache_max = crate::cache::max().map_err(anyhow::Error::msg)?;
    let (arch, kernel) = inspect(config, trace)?;
    let cwd = std::env::current_dir().context("current directory")?;
    let shares = share::plan(config, &cwd)?;
    trace.log(|| format!("host files: {shares:?}"));
    // A -hostRoot binary finds its libraries on the host.
    let libs = if config.host_root {
        Resolved::default()
    } else {
        resolve_libs(config, arch, trace)?
    };
    let gotest = rewrite_go_test_flags(config, &cwd);
    let mut inv = invocation(config, arch, &kernel.image, &gotest, trace)?;
    inv.modules_image = modules_image(config, &kernel, inv.transport, trace);
    let mut outputs = gotest.outputs;
    let tty = terminal(config)?;
    let guest_config = guest_config(
        config,
        &gotest.args,
        &cwd,
        &shares,
        &mut outputs,
        tty,
        trace,
    );
    let drivers = needed_drivers(
        inv.transport,
        inv.host_share,
        config.host_root,
        inv.modules_image.is_some(),
    );
    let mut modules = kernel.plan_modules(&drivers, &config.add_modules)?;
    let cache = warm_start(config, &kernel, &mut inv, drivers, &mut modules, trace);
    trace.log(|| {
        let tree = kernel
            .modules
            .as_ref()
            .map(|t| t.root.display().to_string());
        format!(
            "kernel release {:?}, module tree {:?}, modules to load: {:?} then {:?}",
            kernel.release, tree, modules.transport, modules.user
        )
    });
    let plan = plan_archive(config, arch, &kernel, &inv, &modules, &guest_config, &libs)?;
    let gdb = config
        .gdb
        .map(|port| gdb_server(port, arch, &kernel))
        .transpose()?;
    // What the guest was booted from, for its identity.
    let mut files = vec![kernel.image.clone(), inv.kernel.clone()];
    files.extend(inv.modules_image.clone());
    files.extend(modules.transport.iter().cloned());
    let mut boot = Boot {
        inv: &mut inv,
        outputs: &outputs,
        config,
        signals: &mut signals,
        doubt: modules.doubt.as_deref(),
        cache_max,
        gdb,
        trace,
    };
    if let Some(server) = &boot.gdb {
        say(&format!("{}\n", server.attach));
    }
    // Under -tty the guest has the keyboard from here on; the terminal's
    // mode comes back when this ends, whichever way.
    let _raw = match tty {
        Some(_) => Some(RawMode::enter(STDIN).context("-tty: raw mode")?),
        None => None,
    };
    match cache {
        Some(cache) => boot.warm(&cache, &files, plan),
        None => boot.cold(&plan),
    }
}

/// Under -tty, the size of virtrun's terminal, which must be its stdin.
fn terminal(config: &Config) -> Result<Option<WindowSize>> {
    if !config.tty {
        return Ok(None);
    }
    if config.standalone {
        bail!("-tty: not with -standalone, whose init has the guest's streams to itself");
    }
    if !terminal::is_terminal(STDIN) {
        bail!("-tty: stdin is not a terminal (run virtrun -tty from one, or drop -tty)");
    }
    Ok(Some(
        terminal::size(STDIN).context("-tty: the terminal's size")?,
    ))
}

/// The cache whose snapshot this run starts from (or makes), when warm
/// start applies; the run then gets a disk of its own for its files (a
/// virtio serial port moves a page per read), where the kernel has the
/// driver, which joins the boot modules.
fn warm_start(
    config: &Config,
    kernel: &Kernel,
    inv: &mut Invocation,
    mut drivers: Vec<crate::target::kernel::Driver>,
    modules: &mut ModulePlan,
    trace: &Trace,
) -> Option<PathBuf> {
    if !warm_start_applies(config, inv, modules, trace) {
        return None;
    }
    let Some(cache) = crate::cache::dir() else {
        trace.log(|| "cold boot: no cache directory for snapshots".into());
        return None;
    };
    if !drivers.iter().any(|d| d.module == RUN_DISK_DRIVER.module) {
        drivers.push(RUN_DISK_DRIVER);
        match kernel.plan_modules(&drivers, &config.add_modules) {
            Ok(plan) => *modules = plan,
            Err(e) => {
                trace.log(|| format!("the run goes over the control channel: {e}"));
                return Some(cache);
            }
        }
    }
    inv.run_disk = Some(supervisor::run_disk_path(inv.channels().len()));
    Some(cache)
}

/// Whether warm start applies: on by default, but not for `-noSnapshot`, a
/// standalone init (PID 1 is the user's from the start), the serial
/// transport (a run over a UART would cost more than the boot),
/// `-keepInitramfs` (it keeps the archive a cold boot uses), or drivers the
/// host could not check (modules given without a tree may be the
/// transport's, needed before the save point).
fn warm_start_applies(
    config: &Config,
    inv: &Invocation,
    modules: &ModulePlan,
    trace: &Trace,
) -> bool {
    let cold = if config.no_snapshot {
        Some("-noSnapshot")
    } else if config.standalone {
        Some("-standalone")
    } else if inv.layout() != Layout::Virtio {
        Some("a serial transport")
    } else if config.keep_initramfs {
        Some("-keepInitramfs")
    } else if config.gdb.is_some() {
        Some("-gdb")
    } else if modules.doubt.is_some() {
        Some("drivers not checked against a module tree")
    } else {
        None
    };
    if let Some(why) = cold {
        trace.log(|| format!("cold boot: no warm start with {why}"));
    }
    cold.is_none()
}

fn files_owned(files: &[&Path]) -> Vec<PathBuf> {
    files.iter().map(|f| f.to_path_buf()).collect()
}

/// Boots the guest, cold or warm, with what every boot needs.
struct Boot<'a> {
    inv: &'a mut Invocation,
    outputs: &'a [gotest::Output],
    config: &'a Config,
    signals: &'a mut Signals,
    /// Why the drivers may be missing, for the outcome.
    doubt: Option<&'a str>,
    /// The cache's cap, in bytes.
    cache_max: u64,
    /// Under -gdb: the gdb server's socket and how to attach.
    gdb: Option<GdbServer>,
    trace: &'a Trace,
}

impl Boot<'_> {
    /// A cold boot from an initramfs that holds the whole run.
    fn cold(&mut self, plan: &Plan) -> Result<Outcome> {
        let (archive, keep_dir) = write_archive(self.config, plan)?;
        self.trace.log(|| "initramfs written".into());
        if let Some(outcome) = self.interrupted() {
            return Ok(outcome);
        }
        let gdb = match &self.gdb {
            Some(server) => Some(server.listener.try_clone().context("-gdb")?),
            None => None,
        };
        let start = || gdb.as_ref().map_or(Start::Cold, Start::Gdb);
        let mut report = self.run(&archive, start())?;
        if self.kvm_broken(&report) {
            report = self.run(&archive, start())?;
        }
        if let Some(dir) = keep_dir {
            let kept = dir.keep();
            say(&format!(
                "virtrun: initramfs kept at {}\n",
                kept.join(KEPT_ARCHIVE).display()
            ));
        }
        if let Some(cache) = crate::cache::dir() {
            self.tidy_cache(&cache, None);
        }
        Ok(self.outcome(&report))
    }

    /// Keeps the cache under its cap; what this guest needs stays: its
    /// snapshot, kernel copy, module tree image.
    fn tidy_cache(&self, cache: &Path, snapshot: Option<&Path>) {
        let mut keep = vec![self.inv.kernel.as_path()];
        keep.extend(snapshot);
        keep.extend(self.inv.modules_image.as_deref());
        let removed = crate::cache::enforce(cache, self.cache_max, &keep);
        if !removed.is_empty() {
            self.trace
                .log(|| format!("cache over its cap: removed {removed:?}"));
        }
    }

    /// A warm start: the snapshot in `cache` restored and the run handed
    /// over; without a snapshot, or when restoring fails before the guest
    /// resumed, a boot that makes one. The guest was booted from `files`.
    /// (Under a KVM that turns out broken: all of it again under emulation,
    /// a guest of another identity.)
    fn warm(&mut self, cache: &Path, files: &[PathBuf], plan: Plan) -> Result<Outcome> {
        let argv = self
            .inv
            .args(&supervisor::channel_fds(self.inv.channels().len()));
        let files: Vec<&Path> = files.iter().map(PathBuf::as_path).collect();
        let identity = Identity::new(cache, &self.inv.qemu_bin, &argv, &files);
        let (boot_plan, run_plan) = plan.clone().split();
        let (payload, _) = write_archive(self.config, &run_plan)?;
        let payload_len = payload.metadata().context("the run's archive")?.len();
        if self.inv.run_disk.is_some() {
            // The disk's size is the guest's (its identity's): the memory,
            // which the run's files must fit in anyway.
            let size = u64::from(self.inv.memory_mb) << 20;
            if payload_len > size {
                bail!(
                    "the run's files take {} MiB, more than the guest's memory \
                     (-memory {}): give it more",
                    payload_len >> 20,
                    self.inv.memory_mb
                );
            }
            payload.set_len(size).context("sizing the run's disk")?;
        }
        if let Some(outcome) = self.interrupted() {
            return Ok(outcome);
        }
        if let Some(snapshot) = identity.open() {
            self.trace
                .log(|| format!("warm start from {}", identity.path.display()));
            let timeout = self.config.timeout;
            match self.restore(&identity, &snapshot, &payload, payload_len, timeout)? {
                Restored::Ran(outcome) => return Ok(outcome),
                Restored::KvmBroken => return self.warm(cache, &files_owned(&files), plan),
                Restored::Failed => {}
            }
        } else if identity.given_up() {
            self.trace.log(|| {
                "cold boot: this guest failed twice to be saved or restored; no snapshot is made".into()
            });
        } else {
            self.trace.log(|| {
                format!(
                    "cold boot: no snapshot {} yet, making it",
                    identity.path.display()
                )
            });
        }
        let snapshot = if identity.given_up() {
            None
        } else {
            identity
                .pending(self.inv.memory_mb)
                .inspect_err(|e| self.trace.log(|| format!("no snapshot made: {e}")))
                .ok()
        };
        let (boot, _) = write_archive(self.config, &boot_plan)?;
        let saving = snapshot.is_some();
        // A run that makes its snapshot boots more than once: -timeout
        // counts from the first boot.
        let booted = Instant::now();
        let limit = self.config.timeout;
        let left = || limit.map(|t| t.saturating_sub(booted.elapsed()));
        let mut report = self.run(
            &boot,
            Start::Save {
                snapshot,
                payload: &payload,
                payload_len,
            },
        )?;
        if self.kvm_broken(&report) {
            return self.warm(cache, &files_owned(&files), plan);
        }
        if saving && qemu_failed_before_parking(&report) {
            // Not the guest's doing (a panic, running out of memory): QEMU
            // itself ended, and the snapshot's memory file may be why (the
            // disk filled up meanwhile, say). A boot that makes none.
            self.trace
                .log(|| "QEMU ended before the guest parked: booting again without saving".into());
            if identity.failed() {
                self.trace
                    .log(|| "it failed before: no snapshot of this guest is made again".into());
            }
            report = self.unsaved(&boot, &payload, payload_len, left())?;
        }
        self.tidy_cache(cache, Some(&identity.path));
        if report.saved && report.interrupted.is_none() && report.timed_out.is_none() {
            // The guest stopped once saved: the run goes on from the
            // snapshot (or, should that fail, from a boot that makes none).
            if let Some(snapshot) = identity.open() {
                self.trace.log(|| "restoring the snapshot just made".into());
                match self.restore(&identity, &snapshot, &payload, payload_len, left())? {
                    Restored::Ran(outcome) => return Ok(outcome),
                    Restored::KvmBroken => return self.warm(cache, &files_owned(&files), plan),
                    Restored::Failed => {}
                }
            }
            report = self.unsaved(&boot, &payload, payload_len, left())?;
        }
        Ok(self.outcome(&report))
    }

    /// A boot from `boot` that makes no snapshot: the guest parks and is
    /// given the run at once, within what is `left` of `-timeout`.
    fn unsaved(
        &mut self,
        boot: &File,
        payload: &File,
        payload_len: u64,
        left: Option<Duration>,
    ) -> Result<Report> {
        let start = Start::Save {
            snapshot: None,
            payload,
            payload_len,
        };
        self.run_within(boot, start, left)
    }

    /// Restores `snapshot` (of `identity`) and runs the run in it. A
    /// restore that fails before the guest resumed removes the snapshot.
    fn restore(
        &mut self,
        identity: &Identity,
        snapshot: &File,
        payload: &File,
        payload_len: u64,
        left: Option<Duration>,
    ) -> Result<Restored> {
        let failure = match crate::vm::snapshot::cut_short(snapshot, self.inv.memory_mb) {
            Some(why) => why,
            None => {
                // A restored guest has its initramfs in its memory already;
                // QEMU still wants a file it can map.
                let empty = crate::scratch::unnamed().context("creating an empty initramfs")?;
                let report = self.run_within(
                    &empty,
                    Start::Restore {
                        snapshot,
                        payload,
                        payload_len,
                    },
                    left,
                )?;
                if self.kvm_broken(&report) {
                    return Ok(Restored::KvmBroken);
                }
                match report.restore_failure {
                    None => {
                        identity.restored();
                        return Ok(Restored::Ran(self.outcome(&report)));
                    }
                    Some(why) => why,
                }
            }
        };
        self.trace
            .log(|| format!("restore failed ({failure}): booting cold instead"));
        if identity.discard(snapshot) {
            self.trace
                .log(|| "it failed before: no snapshot of this guest is made again".into());
        }
        Ok(Restored::Failed)
    }

    /// A signal while packing: nothing runs yet, just clean up.
    fn interrupted(&mut self) -> Option<Outcome> {
        let sig = self.signals.pending().next()?;
        Some(Outcome {
            code: 128 + sig as u8,
            message: Some(format!("interrupted by {}", outcome::signal_name(sig))),
        })
    }

    fn outcome(&self, report: &Report) -> Outcome {
        outcome::decide(report, self.doubt)
    }

    fn run(&mut self, archive: &File, start: Start<'_>) -> Result<Report> {
        self.run_within(archive, start, self.config.timeout)
    }

    /// As [`Boot::run`], with what is left of `-timeout` after an earlier
    /// boot of the same run; a run stopped by it was stopped by `-timeout`.
    fn run_within(
        &mut self,
        archive: &File,
        start: Start<'_>,
        left: Option<Duration>,
    ) -> Result<Report> {
        let mut report = supervisor::run(
            self.inv,
            archive,
            start,
            self.outputs,
            left,
            self.signals,
            self.trace,
        )?;
        if report.timed_out.is_some() {
            report.timed_out = self.config.timeout;
        }
        Ok(report)
    }

    /// Whether KVM turned out broken: then says so once, remembers it and
    /// switches to emulation for the run to be repeated.
    fn kvm_broken(&mut self, report: &Report) -> bool {
        let Some(why) = &report.kvm_failure else {
            return false;
        };
        say(&format!(
            "virtrun: warning: KVM is not usable here ({why}); using emulation\n"
        ));
        if let Some(marker) = kvm_known_broken() {
            let _ = std::fs::write(marker, why);
        }
        self.inv.kvm = false;
        true
    }
}

/// Whether QEMU ended before the guest parked, for no reason the guest
/// gave (a kernel panic, running out of memory, its init's error) and not
/// because the run was stopped.
fn qemu_failed_before_parking(report: &Report) -> bool {
    !report.parked
        && report.exit_code.is_none()
        && report.panic.is_none()
        && !report.oom
        && report.init_errors.is_empty()
        && report.fatal.is_none()
        && report.interrupted.is_none()
        && report.timed_out.is_none()
        && report.qemu_status.is_some_and(|s| !s.success())
}

/// How a restore went.
enum Restored {
    /// The run ran in the restored guest.
    Ran(Outcome),
    /// KVM turned out broken: the run is to be repeated under emulation.
    KvmBroken,
    /// The restore failed before the guest resumed; the snapshot is gone.
    Failed,
}

/// QEMU's gdb server for the guest kernel: the socket, bound to the
/// loopback here, and the lines that say how to attach.
struct GdbServer {
    listener: std::net::TcpListener,
    attach: String,
}

/// Binds `127.0.0.1:port` (a port in use is an error before anything
/// boots) and words how to attach: with the kernel's symbol file, which
/// Debian ships in `linux-image-<release>-dbg`, and `gdb-multiarch` for a
/// guest of another architecture.
fn gdb_server(port: u16, arch: Arch, kernel: &Kernel) -> Result<GdbServer> {
    let listener = std::net::TcpListener::bind(("127.0.0.1", port))
        .with_context(|| format!("-gdb: cannot listen on 127.0.0.1:{port}"))?;
    let gdb = if Arch::host() == Some(arch) {
        "gdb"
    } else {
        "gdb-multiarch"
    };
    let attach = match &kernel.release {
        Some(release) => {
            let symbols = format!("/usr/lib/debug/boot/vmlinux-{release}");
            let note = if Path::new(&symbols).is_file() {
                String::new()
            } else {
                format!(
                    "\nvirtrun: {symbols} is the kernel's symbol file, from Debian's \
                     linux-image-{release}-dbg (or the vmlinux of your kernel build)"
                )
            };
            format!("{gdb} -ex 'target remote 127.0.0.1:{port}' {symbols}{note}")
        }
        None => format!(
            "{gdb} -ex 'target remote 127.0.0.1:{port}' path/to/vmlinux (the kernel's \
             symbol file, from your kernel build)"
        ),
    };
    Ok(GdbServer {
        listener,
        attach: format!(
            "virtrun: the guest kernel waits for gdb on 127.0.0.1:{port} (nokaslr); \
             attach with:\n  {attach}"
        ),
    })
}

/// The binary's architecture and the kernel, which must match.
fn inspect(config: &Config, trace: &Trace) -> Result<(Arch, Kernel)> {
    let info = elf::inspect(&config.binary).context("binary")?;
    let Some(arch) = info.arch else {
        bail!(
            "binary: {}: unsupported architecture {} (supported: x86_64, aarch64, riscv64)",
            config.binary.display(),
            elf::machine_name(info.machine)
        );
    };
    trace.log(|| format!("binary inspected: {}", arch.name()));
    let (image, modules_dir) = match &config.kernel {
        Some(image) => (image.clone(), config.modules_dir.clone()),
        None => {
            let found = discover::find(arch, &discover::Places::host())?;
            trace.log(|| format!("no -kernel: found {found:?}"));
            let modules_dir = config.modules_dir.clone().or(found.modules_dir);
            (found.image, modules_dir)
        }
    };
    let kernel = Kernel::inspect(&image, modules_dir.as_deref()).context("-kernel")?;
    if let Some(kernel_arch) = kernel.arch
        && kernel_arch != arch
    {
        bail!(
            "kernel {} is {} but binary {} is {} ({}): use a kernel of the binary's architecture",
            image.display(),
            kernel_arch.name(),
            config.binary.display(),
            arch.name(),
            arch.elf_name()
        );
    }
    Ok((arch, kernel))
}

/// The shared libraries of the binary and the added files, from the host,
/// `-sysroot` or, for a foreign architecture, Debian's cross sysroot.
fn resolve_libs(config: &Config, arch: Arch, trace: &Trace) -> Result<Resolved> {
    let mut elves = vec![config.binary.as_path()];
    elves.extend(config.add_files.iter().map(|p| p.as_path()));
    let resolver = match &config.sysroot {
        Some(root) => Resolver::for_sysroot(arch, root),
        None if Arch::host() != Some(arch) => match Resolver::debian_cross_sysroot(arch) {
            Some(root) => Resolver::for_sysroot(arch, &root),
            None => Resolver::new(arch),
        },
        None => Resolver::new(arch),
    };
    let libs = resolver.resolve(&elves)?;
    trace.log(|| format!("resolved {} libraries", libs.libs.len()));
    Ok(libs)
}

/// The binary's arguments with go test's file flags pointed into the guest.
fn rewrite_go_test_flags(config: &Config, cwd: &Path) -> gotest::Rewrite {
    if config.no_go_test_flag_rewrite {
        gotest::Rewrite {
            args: config.args.clone(),
            outputs: Vec::new(),
        }
    } else if config.standalone {
        gotest::rewrite(&config.args, cwd, gotest::Target::Ports)
    } else {
        gotest::rewrite(&config.args, cwd, gotest::Target::Files)
    }
}

/// The QEMU invocation; for amd64 it boots the cached PVH `vmlinux` when the
/// kernel has one.
fn invocation(
    config: &Config,
    arch: Arch,
    kernel: &Path,
    gotest: &gotest::Rewrite,
    trace: &Trace,
) -> Result<Invocation> {
    let mut inv = Invocation::new(
        config,
        arch,
        kernel,
        use_kvm(config, arch),
        supervisor::archive_path(),
        &gotest.args,
        if config.standalone {
            gotest.outputs.len()
        } else {
            0
        },
    )?;
    if arch == Arch::Amd64
        && let Some(cache) = crate::cache::dir()
    {
        match crate::target::vmlinux::pvh_image(kernel, &cache) {
            Ok(Some(vmlinux)) => {
                trace.log(|| format!("booting the PVH vmlinux {}", vmlinux.display()));
                inv.kernel = vmlinux;
            }
            Ok(None) => trace.log(|| "kernel has no PVH entry: booting it as it is".into()),
            Err(e) => trace.log(|| format!("no PVH vmlinux ({e}): booting the kernel as it is")),
        }
    }
    Ok(inv)
}

/// What the default init is told; adds the environment's output files
/// (`LLVM_PROFILE_FILE`) to `outputs`.
fn guest_config(
    config: &Config,
    args: &[OsString],
    cwd: &Path,
    shares: &share::Plan,
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
        argv0: config
            .binary
            .file_name()
            .map_or_else(Vec::new, |n| n.as_bytes().to_vec()),
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

/// The image of the kernel's module tree, for modules on demand: none in
/// standalone mode (the init is the user's), without a tree, or on a kernel
/// that cannot mount it (no virtio disk or ext4, which isa runs otherwise
/// do without). Failing to make it costs only the feature, which `-debug`
/// tells.
fn modules_image(
    config: &Config,
    kernel: &Kernel,
    transport: crate::config::Transport,
    trace: &Trace,
) -> Option<PathBuf> {
    if config.standalone {
        return None;
    }
    let tree = kernel.modules.as_ref()?;
    let release = kernel.release.as_deref()?;
    if let Err(e) = kernel.plan_modules(&needed_drivers(transport, false, false, true), &[]) {
        trace.log(|| format!("no modules on demand: {e}"));
        return None;
    }
    let cache = crate::cache::dir()?;
    match crate::target::modindex::image(tree, release, &cache) {
        Ok(image) => {
            trace.log(|| format!("module tree image {}", image.display()));
            Some(image)
        }
        Err(e) => {
            trace.log(|| format!("no modules on demand: {e}"));
            None
        }
    }
}

/// What goes into the archive. A standalone init on a virtio transport gets
/// the loader in front of it, which loads the transport's drivers (inits
/// written for the original load none) and fails at once when one is
/// missing.
fn plan_archive(
    config: &Config,
    arch: Arch,
    kernel: &Kernel,
    inv: &Invocation,
    modules: &ModulePlan,
    guest_config: &GuestConfig,
    libs: &Resolved,
) -> Result<Plan> {
    let guest_modules = |files: &[PathBuf]| {
        files
            .iter()
            .map(|m| kernel.guest_module(m))
            .collect::<Result<Vec<_>, _>>()
    };
    let loader = config.standalone && inv.layout() == Layout::Virtio;
    // The default init and the loader load the boot modules first, from
    // their own directory; a standalone init without the loader finds all
    // in /lib/modules.
    let (lib_modules, transport_modules) = if loader || !config.standalone {
        (
            guest_modules(&modules.user)?,
            guest_modules(&modules.transport)?,
        )
    } else {
        (
            guest_modules(&[modules.transport.as_slice(), &modules.user].concat())?,
            Vec::new(),
        )
    };
    Ok(Plan::new(&Input {
        init: if config.standalone && !loader {
            None
        } else {
            Some(guest_init(arch))
        },
        config: (!config.standalone).then(|| guest_config.encode()),
        boot: (!config.standalone).then(|| {
            BootConfig {
                layout: inv.layout(),
                verbose: config.verbose,
                modules_on_demand: inv.modules_image.is_some(),
                run_disk: inv.run_disk.is_some(),
            }
            .encode()
        }),
        loader: loader.then(|| {
            LoaderConfig {
                ports: STANDALONE_PORTS + inv.file_ports,
                verbose: config.verbose,
            }
            .encode()
        }),
        main: (!config.host_root || guest_config.bind_main).then_some(config.binary.as_path()),
        files: &config.add_files,
        modules: &lib_modules,
        transport_modules: &transport_modules,
        libs,
    })?)
}

/// Writes the archive (see [`archive_file`]); with `-keepInitramfs` also
/// returns the private directory that keeps it.
fn write_archive(config: &Config, plan: &Plan) -> Result<(File, Option<tempfile::TempDir>)> {
    let keep_dir = if config.keep_initramfs {
        Some(
            tempfile::Builder::new()
                .prefix("virtrun-")
                .permissions(std::fs::Permissions::from_mode(0o700))
                .tempdir()
                .context("creating temporary directory")?,
        )
    } else {
        None
    };
    let archive =
        archive_file(keep_dir.as_ref().map(|d| d.path())).context("creating the initramfs")?;
    plan.write(BufWriter::with_capacity(256 * 1024, &archive))?
        .into_inner()
        .map_err(|e| e.into_error())
        .context("writing initramfs")?;
    Ok((archive, keep_dir))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Parsed, Sources, parse};
    use std::os::unix::process::ExitStatusExt;
    use std::path::PathBuf;

    #[test]
    fn only_qemu_ending_on_its_own_before_the_save_point_boots_again() {
        let killed = Report {
            qemu_status: Some(std::process::ExitStatus::from_raw(libc::SIGBUS)),
            ..Report::default()
        };
        assert!(qemu_failed_before_parking(&killed));
        let cases = [
            Report {
                parked: true,
                ..killed.clone()
            },
            Report {
                panic: Some("Kernel panic".into()),
                ..killed.clone()
            },
            Report {
                oom: true,
                ..killed.clone()
            },
            Report {
                exit_code: Some(255),
                ..killed.clone()
            },
            Report {
                init_errors: vec!["load module".into()],
                ..killed.clone()
            },
            Report {
                interrupted: Some(libc::SIGINT),
                ..killed.clone()
            },
            Report {
                timed_out: Some(Duration::from_secs(1)),
                ..killed.clone()
            },
            Report {
                qemu_status: Some(std::process::ExitStatus::from_raw(0)),
                ..killed.clone()
            },
        ];
        for report in cases {
            assert!(!qemu_failed_before_parking(&report), "{report:?}");
        }
    }

    fn config(flags: &[&str]) -> Config {
        let mut cmdline: Vec<std::ffi::OsString> = flags.iter().map(Into::into).collect();
        cmdline.extend([
            "-kernel".into(),
            "/etc/hostname".into(),
            "/usr/bin/env".into(),
        ]);
        let src = Sources {
            cmdline,
            env_args: None,
            args_file: None,
            cwd: PathBuf::from("/"),
            getenv: &|_| None,
        };
        match parse(&src) {
            Ok(Parsed::Run(config)) => config,
            other => panic!("expected a run, got {other:?}"),
        }
    }

    #[test]
    fn kvm_only_for_the_hosts_own_architecture() {
        let foreign = [Arch::Amd64, Arch::Arm64, Arch::Riscv64]
            .into_iter()
            .filter(|&a| Arch::host() != Some(a));
        for arch in foreign {
            assert!(!use_kvm(&config(&[]), arch), "{arch:?}");
        }
        let host = Arch::host().expect("a supported host");
        assert!(!use_kvm(&config(&["-nokvm"]), host));
    }
}
