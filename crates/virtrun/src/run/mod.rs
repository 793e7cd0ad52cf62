//! One run, start to end: inspect, plan, pack, boot, supervise, decide.

mod archive;
mod boot;
mod gdb;
mod guest;
mod kvm;
pub mod matrix;
pub mod nested;

use archive::plan_archive;
use boot::{Boot, warm_start};
use gdb::gdb_server;
use guest::guest_config;
use kvm::use_kvm;

pub use guest::FORWARDED_ENV;

use crate::config::{Config, KernelArg};
use crate::inspect::elf::{self, Arch};
use crate::inspect::kernel::{Kernel, ModulePlan, Needs, needed_drivers};
use crate::inspect::libs::{Resolved, Resolver};
use crate::inspect::{discover, registry, source};
use crate::outcome::Outcome;
use crate::pack::gotest;
use crate::pack::share;
use crate::trace::{Trace, say};
use crate::vm::qemu::Invocation;
use crate::vm::supervisor::{self};
use crate::vm::terminal::{self, RawMode, STDIN};
use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};
use virtrun_protocol::WindowSize;

/// Runs `config` and returns virtrun's outcome. Host-side failures are errors
/// (exit 255); everything the guest did is in the outcome.
pub fn run(config: &Config, trace: &Trace) -> Result<Outcome> {
    let (outcome, warm) = run_one(config, trace)?;
    matrix::report(warm);
    Ok(outcome)
}

/// As [`run`], and whether the run ran in a restored guest (warm).
fn run_one(config: &Config, trace: &Trace) -> Result<(Outcome, bool)> {
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
    let _dropped = drop_outputs(&mut outputs);
    let (modules, cache) = plan_modules(config, &kernel, &mut inv, trace)?;
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
        restored: false,
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
    let outcome = match cache {
        Some(cache) => boot.warm(&cache, &files, plan)?,
        None => boot.cold(&plan)?,
    };
    Ok((outcome, boot.restored))
}

/// In a matrix's later runs, what the guest sends of go test's files goes
/// to a directory that is removed after the run (the first run serves
/// them). It is made only when a file arrives, so that a run killed
/// before leaves nothing.
fn drop_outputs(outputs: &mut [gotest::Output]) -> Option<Dropped> {
    if !matrix::secondary() {
        return None;
    }
    let dir = std::env::temp_dir().join(format!("virtrun-dropped-{}", std::process::id()));
    for (i, output) in outputs.iter_mut().enumerate() {
        output.host = dir.join(i.to_string());
    }
    Some(Dropped(dir))
}

/// The directory of [`drop_outputs`], removed when dropped.
struct Dropped(PathBuf);

impl Drop for Dropped {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The modules the guest loads at boot and with the run, and the cache of
/// its snapshot when warm start applies (which may add the run disk's
/// driver).
fn plan_modules(
    config: &Config,
    kernel: &Kernel,
    inv: &mut Invocation,
    trace: &Trace,
) -> Result<(ModulePlan, Option<PathBuf>)> {
    let drivers = needed_drivers(
        inv.transport,
        Needs {
            share: inv.host_share,
            overlay: config.host_root,
            modules: inv.modules_image.is_some(),
            net: inv.net,
        },
    );
    let mut modules = kernel.plan_modules(&drivers, &config.add_modules)?;
    let cache = warm_start(config, kernel, inv, drivers, &mut modules, trace);
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
    Ok((modules, cache))
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
    let kernel = match &config.kernel {
        Some(arg) => given_kernel(arg, config, arch, trace)?,
        None => default_kernel(config, arch, trace)?,
    };
    if let Some(kernel_arch) = kernel.arch
        && kernel_arch != arch
    {
        bail!(
            "kernel {} is {} but binary {} is {} ({}): use a kernel of the binary's architecture",
            kernel.image.display(),
            kernel_arch.name(),
            config.binary.display(),
            arch.name(),
            arch.elf_name()
        );
    }
    Ok((arch, kernel))
}

/// The kernel `-kernel` names: a file as it is, a directory's image and
/// tree, an image reference pulled into the cache and used as a directory.
fn given_kernel(arg: &KernelArg, config: &Config, arch: Arch, trace: &Trace) -> Result<Kernel> {
    resolve_kernel(arg, config, arch, trace).map(|(_, kernel)| kernel)
}

/// As [`given_kernel`], and the file or directory the kernel is (a pulled
/// image's in the cache).
fn resolve_kernel(
    arg: &KernelArg,
    config: &Config,
    arch: Arch,
    trace: &Trace,
) -> Result<(PathBuf, Kernel)> {
    let (path, found) = match arg {
        KernelArg::File(image) => (
            image.clone(),
            source::Source {
                image: image.clone(),
                modules_dir: None,
            },
        ),
        KernelArg::Dir(dir) => (dir.clone(), source::in_directory(dir).context("-kernel")?),
        KernelArg::Image(reference) => {
            let dir = registry::pull(reference, arch, trace).context("-kernel")?;
            let found =
                source::in_directory(&dir).with_context(|| format!("-kernel {reference}"))?;
            (dir, found)
        }
    };
    trace.log(|| format!("kernel {arg}: {found:?}"));
    let modules_dir = config.modules_dir.clone().or(found.modules_dir);
    let kernel = Kernel::inspect(&found.image, modules_dir.as_deref()).context("-kernel")?;
    Ok((path, kernel))
}

/// Without `-kernel`: the cache's kernel for the binary's architecture, else
/// the host's. A run that needs the host's files (`-hostRoot`, `-share`)
/// on a kernel whose configuration says it has no 9p takes the cache's
/// generic kernel (`kernels/<arch>-generic/vmlinuz`) when that has it.
fn default_kernel(config: &Config, arch: Arch, trace: &Trace) -> Result<Kernel> {
    let places = discover::Places::host();
    let found = discover::find(arch, &places)?;
    trace.log(|| format!("no -kernel: found {found:?}"));
    let modules_dir = config.modules_dir.clone().or(found.modules_dir);
    let kernel = Kernel::inspect(&found.image, modules_dir.as_deref()).context("-kernel")?;
    let shares = config.host_root || !config.shares.is_empty();
    if !shares || kernel.has_9p() != Some(false) {
        return Ok(kernel);
    }
    let Some(generic) = places.cached_generic(arch).filter(|p| p.is_file()) else {
        trace.log(|| "the default kernel has no 9p, and the cache has no generic kernel".into());
        return Ok(kernel);
    };
    match Kernel::inspect(&generic, config.modules_dir.as_deref()) {
        Ok(g) if g.has_9p() != Some(false) => {
            trace.log(|| {
                format!(
                    "the default kernel has no 9p, which -hostRoot and -share need: taking {}",
                    generic.display()
                )
            });
            Ok(g)
        }
        _ => Ok(kernel),
    }
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
        match crate::inspect::vmlinux::pvh_image(kernel, &cache) {
            Ok(Some(vmlinux)) => {
                trace.log(|| format!("booting the PVH vmlinux {}", vmlinux.display()));
                inv.kernel = vmlinux;
            }
            Ok(None) => trace.log(|| "kernel has no PVH entry: booting it as it is".into()),
            Err(e) => trace.log(|| format!("no PVH vmlinux ({e}): booting the kernel as it is")),
        }
    }
    if config.standalone {
        let (encoding, why) = crate::inspect::gobuild::port_encoding(&config.binary);
        trace.log(|| format!("standalone init's ports: {encoding:?} ({why})"));
        inv.port_encoding = encoding;
    }
    Ok(inv)
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
    if let Err(e) = kernel.plan_modules(
        &needed_drivers(
            transport,
            Needs {
                modules: true,
                ..Needs::default()
            },
        ),
        &[],
    ) {
        trace.log(|| format!("no modules on demand: {e}"));
        return None;
    }
    let cache = crate::cache::dir()?;
    match crate::pack::modules_image::image(tree, release, &cache) {
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
