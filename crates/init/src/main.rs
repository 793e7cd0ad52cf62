//! The default guest init of virtrun: sets the guest up, runs `/main` with
//! its streams connected to the host, reports how it ended and powers off.
//! In a standalone guest whose transport needs driver modules it is the
//! [`loader`] in front of the user's init instead.
//!
//! All building blocks come from `virtrun-sysinit`; all knowledge of the
//! host (channel roles, events, frames) from `virtrun-protocol`.
//!
//! Its parts, in the order of the guest's life: [`main`] and `run` (boot to
//! the save point: modules, channels, the module tree and its [`modprobe`]
//! helper, the NIC), [`receive`] (the run after the save point),
//! [`share`] (the host's files), [`binary`] (the binary as a job, its end
//! reported), [`streams`](mod@streams) (its streams, on resident threads: threads made
//! before the save point that never exit). The words are those of
//! `virtrun-protocol`.

mod binary;
mod loader;
mod modprobe;
mod receive;
mod share;
mod streams;

use binary::*;
use receive::*;
use streams::*;

use std::fs::File;
use std::io::{self};
use std::path::Path;
use std::time::Duration;
use virtrun_protocol::{
    BOOT_CONFIG_PATH, BootConfig, Event, GUEST_ENV, LOADER_CONFIG_PATH, MODULES_DIR,
    RUN_DISK_SERIAL, TRANSPORT_MODULES_DIR, USER_NET,
};
use virtrun_sysinit::channel::{self, Channels, EventSender, FrameReader};
use virtrun_sysinit::process::{self};
use virtrun_sysinit::setup::{self, Setup};
use virtrun_sysinit::{INIT_FAILED, disk, kmod, log, net, power};

/// How long to wait for the host to confirm it has all output. The host
/// answers as soon as it read everything; only a host that stopped reading
/// (its own output blocked) takes long.
const DONE_WAIT: Duration = Duration::from_secs(60);

fn main() {
    if let Some(module) = modprobe::requested() {
        modprobe::helper(&module);
    }
    virtrun_sysinit::exit_unless_pid1("virtrun-init");
    let init = process::monotonic_us();
    // SAFETY: the init is still single-threaded here. The environment is set
    // in place because `Command::envs` would sort the variables.
    unsafe {
        setup::clear_env();
        setup::set_envs(GUEST_ENV);
    }
    if std::path::Path::new(LOADER_CONFIG_PATH).exists() {
        loader::run();
    }
    if let Err(e) = run(init) {
        log::fatal(&e.to_string());
    }
    power::shutdown()
}

/// A failure before the control channel exists only reaches the kernel log.
///
/// The guest's life has one save point: boot as every run of this guest
/// identity does (the boot modules, the channels), then park. A snapshot is
/// taken there; a restored guest goes on from the same place. Everything
/// after it belongs to the run: fresh entropy and the clock, the run's
/// files (when they were not in the initramfs), its configuration, shares.
fn run(init: u64) -> virtrun_sysinit::Result<()> {
    setup::start()?;
    // The binary's working directory, set here once: a working directory
    // set for the spawn makes std fork the init instead of spawning with
    // vfork semantics, which costs ~20 ms under emulation.
    std::env::set_current_dir("/").map_err(|e| virtrun_sysinit::Error::new("chdir /", e))?;
    let boot =
        BootConfig::decode(&read_file(BOOT_CONFIG_PATH)?).map_err(invalid("decode boot config"))?;
    // Modules first: they may provide the very drivers the channels need.
    // The boot modules, then those of a cold run's initramfs (-addModule;
    // without a module tree they may be the transport's drivers). A failure
    // is reported once the control channel is open.
    let setup = Setup::new()
        .verbose(boot.verbose)
        .modules_dir(TRANSPORT_MODULES_DIR)
        .run()
        .and_then(|()| kmod::load_dir(Path::new(MODULES_DIR)).map(drop))
        .and_then(|()| if boot.user_net { user_net() } else { Ok(()) });
    let step = |what: &str| {
        if boot.verbose {
            log::info(what);
        }
    };
    share::mark_guest(Path::new("/"));
    let channels = Channels::open(boot.layout, channel::PORT_WAIT)?;
    step("channels open");
    // The module tree belongs to the guest's identity: mounted before the
    // save point. Without it (a damaged image in the cache, say) the run
    // goes on as without modules on demand; the log tells why.
    if boot.modules_on_demand && setup.is_ok() {
        match modprobe::mount_tree() {
            Ok(()) => {
                let nodes = modprobe::static_nodes();
                step(&format!("module tree mounted, {nodes} static device nodes"));
            }
            Err(e) => log::error(&format!("no modules on demand: {e}")),
        }
    }
    // The run's disk too, and the buffer the run is read into: found,
    // opened and made before the save point, used after it.
    let run_disk = boot
        .run_disk
        .then(|| disk::find(RUN_DISK_SERIAL, disk::DISK_WAIT).and_then(|d| disk::open_direct(&d)));
    let buffer = disk::buffer();
    let events = EventSender::new(clone(&channels.control)?);
    let mut frames = FrameReader::new(clone(&channels.control)?);
    let streams = streams(channels, &events)?;
    let config = setup
        .and_then(|()| receive_run(run_disk, buffer, &events, &mut frames, &step))
        .and_then(|()| read_config());
    let ready = config.and_then(|config| {
        share::mount(&config)?;
        step("shares mounted");
        enter_cwd(&config)?;
        Ok(config)
    });
    let (code, done) =
        match ready.and_then(|config| run_main(&config, streams, frames, &events, init)) {
            Ok((code, done)) => (code, Some(done)),
            Err(e) => {
                let _ = events.send(&Event::Error(e.to_string()));
                (INIT_FAILED, None)
            }
        };
    events
        .send(&Event::ExitCode(code))
        .map_err(|e| virtrun_sysinit::Error::new("send exit code", e))?;
    // Power off only once the host has all output: data written to a
    // virtio port may still be queued in the guest.
    if let Some(done) = done
        && done.recv_timeout(DONE_WAIT).is_err()
    {
        log::error("the host did not confirm the output; ending anyway");
    }
    Ok(())
}

/// The NIC on QEMU's user network, as a host on it is: its address, the
/// default route through the host, QEMU's resolver in `/etc/resolv.conf`
/// (which a -hostRoot guest's own `/etc` gets too, see [`share`]).
fn user_net() -> virtrun_sysinit::Result<()> {
    let nic = net::interfaces().into_iter().next().ok_or_else(|| {
        virtrun_sysinit::Error::new(
            "-net user",
            io::Error::new(io::ErrorKind::NotFound, "no network interface besides lo"),
        )
    })?;
    net::configure(
        &nic,
        USER_NET.address,
        USER_NET.prefix,
        Some(USER_NET.gateway),
    )?;
    let resolv = format!("nameserver {}\n", net::dotted(USER_NET.resolver));
    std::fs::write(RESOLV_CONF, resolv)
        .map_err(|e| virtrun_sysinit::Error::new(format!("write {RESOLV_CONF}"), e))
}

/// Where the resolver's address goes.
const RESOLV_CONF: &str = "/etc/resolv.conf";

fn read_file(path: &str) -> virtrun_sysinit::Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| virtrun_sysinit::Error::new(format!("read {path}"), e))
}

fn invalid(what: &'static str) -> impl Fn(virtrun_protocol::DecodeError) -> virtrun_sysinit::Error {
    move |e| virtrun_sysinit::Error::new(what, io::Error::new(io::ErrorKind::InvalidData, e))
}

fn clone(file: &File) -> virtrun_sysinit::Result<File> {
    file.try_clone()
        .map_err(|e| virtrun_sysinit::Error::new("dup channel", e))
}
