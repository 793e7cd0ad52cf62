//! The run, after the save point: fresh entropy and the clock, the run's files
//! unpacked, its configuration, the binary's working directory.

use super::*;
use std::ffi::OsStr;
use std::fs::File;
use std::io::{self};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use virtrun_protocol::{CONFIG_PATH, Event, Frame, GuestConfig, MODULES_DIR};
use virtrun_sysinit::channel::{EventSender, FrameReader};
use virtrun_sysinit::{cpio, disk, fs, kmod, log, resume};

/// Parks (the save point), then takes the host's entropy and clock and the
/// run's files: none when they were in the initramfs, an archive unpacked
/// into the root when this guest was booted for a snapshot.
pub(super) fn receive_run(
    run_disk: Option<virtrun_sysinit::Result<File>>,
    buffer: Vec<u8>,
    events: &EventSender,
    frames: &mut FrameReader,
    step: &dyn Fn(&str),
) -> virtrun_sysinit::Result<()> {
    let lost = |what: &str| {
        virtrun_sysinit::Error::new(what, io::Error::from(io::ErrorKind::UnexpectedEof))
    };
    let unexpected = |what: &str, frame: Frame| {
        virtrun_sysinit::Error::new(
            what,
            io::Error::new(io::ErrorKind::InvalidData, format!("{frame:?}")),
        )
    };
    let control = |e| virtrun_sysinit::Error::new("read control", e);
    let pool = resume::Pool::open()?;
    events
        .send(&Event::Parked)
        .map_err(|e| virtrun_sysinit::Error::new("send parked", e))?;
    match frames.next_frame().map_err(control)? {
        Some(Frame::Resume(resume)) => {
            resume::apply(&pool, &resume)?;
            step("resumed: entropy and clock from the host");
        }
        Some(other) => return Err(unexpected("expected resume", other)),
        None => return Err(lost("wait for resume")),
    }
    events
        .send(&Event::Resumed)
        .map_err(|e| virtrun_sysinit::Error::new("send resumed", e))?;
    let len = match frames.next_frame().map_err(control)? {
        Some(Frame::Payload(len)) => len,
        Some(other) => return Err(unexpected("expected the run", other)),
        None => return Err(lost("wait for the run")),
    };
    if len == 0 {
        return Ok(());
    }
    // The buffer and the disk are kept, not freed or closed: under
    // emulation the guest's kernel would translate its unmap and release
    // paths anew in every restored run, for a guest about to end anyway.
    let paths = if let Some(disk) = run_disk {
        let mut payload = disk::ChunkReader::new(disk?, len, buffer);
        let paths = cpio::unpack(&mut payload, Path::new("/"))?;
        std::mem::forget(payload);
        paths
    } else {
        let mut payload = disk::ChunkReader::new(frames.payload(len), len, buffer);
        let paths = cpio::unpack(&mut payload, Path::new("/"))?;
        // Whatever follows the archive's trailer (padding) is part of it.
        io::copy(&mut payload, &mut io::sink()).map_err(control)?;
        paths
    };
    step(&format!("the run unpacked: {} entries", paths.len()));
    // The run's modules (-addModule), when it brought any.
    let modules = Path::new(MODULES_DIR);
    if paths.iter().any(|p| p.parent() == Some(modules)) {
        kmod::load_dir(modules)?;
    }
    Ok(())
}

/// The run's configuration, read and removed.
pub(super) fn read_config() -> virtrun_sysinit::Result<GuestConfig> {
    let raw = read_file(CONFIG_PATH)?;
    fs::remove_if_exists(Path::new(CONFIG_PATH))?;
    let config = GuestConfig::decode(&raw).map_err(invalid("decode config"))?;
    if config.verbose {
        log::info("config read");
    }
    Ok(config)
}

/// Moves to the binary's working directory (the spawn inherits it) and
/// creates the directories of its output files there, in its root.
pub(super) fn enter_cwd(config: &GuestConfig) -> virtrun_sysinit::Result<()> {
    if !config.cwd.is_empty() {
        let cwd = Path::new(OsStr::from_bytes(&config.cwd));
        std::env::set_current_dir(cwd)
            .map_err(|e| virtrun_sysinit::Error::new(format!("chdir {}", cwd.display()), e))?;
    }
    prepare_outputs(&config.outputs);
    Ok(())
}

/// Creates the directories the binary writes its output files into: a
/// directory output itself, a file output's parent.
pub(super) fn prepare_outputs(outputs: &[Vec<u8>]) {
    for path in outputs {
        let path = Path::new(OsStr::from_bytes(path));
        // go test's -test.gocoverdir and LLVM's profile directory are named
        // without a file; a file output has a numbered name.
        let dir = if path.extension().is_none() && !is_numbered(path) {
            path
        } else {
            path.parent().unwrap_or(Path::new("/"))
        };
        if let Err(e) = std::fs::create_dir_all(dir) {
            log::error(&format!("create {}: {e}", dir.display()));
        }
    }
}

pub(super) fn is_numbered(path: &Path) -> bool {
    path.file_name()
        .and_then(OsStr::to_str)
        .is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit()))
}
