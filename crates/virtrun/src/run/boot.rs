//! Booting the guest, cold or warm: whether warm start applies, the
//! snapshot made or restored, and a broken KVM's fallback to emulation.

use super::archive::{KEPT_ARCHIVE, write_archive};
use super::gdb::GdbServer;
use super::kvm::kvm_known_broken;
use crate::config::Config;
use crate::inspect::kernel::{Kernel, ModulePlan, RUN_DISK_DRIVER};
use crate::outcome::{self, Outcome};
use crate::pack::gotest;
use crate::pack::initramfs::Plan;
use crate::trace::{Trace, say};
use crate::vm::qemu::Invocation;
use crate::vm::snapshot::Identity;
use crate::vm::supervisor::{self, Report, Start};
use anyhow::{Context, Result, bail};
use signal_hook::iterator::Signals;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use virtrun_protocol::Layout;

/// The cache whose snapshot this run starts from (or makes), when warm
/// start applies; the run then gets a disk of its own for its files (a
/// virtio serial port moves a page per read), where the kernel has the
/// driver, which joins the boot modules.
pub(super) fn warm_start(
    config: &Config,
    kernel: &Kernel,
    inv: &mut Invocation,
    mut drivers: Vec<crate::inspect::kernel::Driver>,
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
pub(super) fn warm_start_applies(
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

/// Boots the guest, cold or warm, with what every boot needs.
pub(super) struct Boot<'a> {
    pub(super) inv: &'a mut Invocation,
    pub(super) outputs: &'a [gotest::Output],
    pub(super) config: &'a Config,
    pub(super) signals: &'a mut Signals,
    /// Why the drivers may be missing, for the outcome.
    pub(super) doubt: Option<&'a str>,
    /// The cache's cap, in bytes.
    pub(super) cache_max: u64,
    /// Under -gdb: the gdb server's socket and how to attach.
    pub(super) gdb: Option<GdbServer>,
    pub(super) trace: &'a Trace,
    /// The run ran in a restored guest (warm), as a matrix reports it.
    pub(super) restored: bool,
}

impl Boot<'_> {
    /// A cold boot from an initramfs that holds the whole run.
    pub(super) fn cold(&mut self, plan: &Plan) -> Result<Outcome> {
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
    pub(super) fn warm(&mut self, cache: &Path, files: &[PathBuf], plan: Plan) -> Result<Outcome> {
        let argv = self
            .inv
            .args(&supervisor::channel_fds(self.inv.channels().len()));
        let paths: Vec<&Path> = files.iter().map(PathBuf::as_path).collect();
        let identity = Identity::new(cache, &self.inv.qemu_bin, &argv, &paths);
        let (boot_plan, run_plan) = plan.clone().split();
        let run = self.run_archive(&run_plan)?;
        if let Some(outcome) = self.interrupted() {
            return Ok(outcome);
        }
        if let Some(snapshot) = identity.open() {
            self.trace
                .log(|| format!("warm start from {}", identity.path.display()));
            let timeout = self.config.timeout;
            match self.restore(&identity, &snapshot, &run, timeout)? {
                Restored::Ran(outcome) => return Ok(outcome),
                Restored::KvmBroken => return self.warm(cache, files, plan),
                Restored::Failed => {}
            }
        } else {
            self.trace.log(|| why_cold(&identity));
        }
        match self.boot_and_save(cache, &identity, &boot_plan, &run)? {
            Restored::Ran(outcome) => Ok(outcome),
            Restored::KvmBroken => self.warm(cache, files, plan),
            Restored::Failed => unreachable!("a boot that saves ends in an outcome"),
        }
    }

    /// The run's own archive, on the run disk when the guest has one (its
    /// size the guest's memory, part of its identity).
    fn run_archive(&self, run_plan: &Plan) -> Result<RunArchive> {
        let (file, _) = write_archive(self.config, run_plan)?;
        let len = file.metadata().context("the run's archive")?.len();
        if self.inv.run_disk.is_some() {
            // The run's files must fit in the guest's memory anyway.
            let size = u64::from(self.inv.memory_mb) << 20;
            if len > size {
                bail!(
                    "the run's files take {} MiB, more than the guest's memory \
                     (-memory {}): give it more",
                    len >> 20,
                    self.inv.memory_mb
                );
            }
            file.set_len(size).context("sizing the run's disk")?;
        }
        Ok(RunArchive { file, len })
    }

    /// A boot that makes the snapshot of `identity` (unless this guest
    /// failed to be saved twice), then runs the run in what it saved; a
    /// boot that makes none when saving or restoring fails.
    fn boot_and_save(
        &mut self,
        cache: &Path,
        identity: &Identity,
        boot_plan: &Plan,
        run: &RunArchive,
    ) -> Result<Restored> {
        let snapshot = if identity.given_up() {
            None
        } else {
            identity
                .pending(self.inv.memory_mb)
                .inspect_err(|e| self.trace.log(|| format!("no snapshot made: {e}")))
                .ok()
        };
        let (boot, _) = write_archive(self.config, boot_plan)?;
        let saving = snapshot.is_some();
        // A run that makes its snapshot boots more than once: -timeout
        // counts from the first boot.
        let booted = Instant::now();
        let limit = self.config.timeout;
        let left = || limit.map(|t| t.saturating_sub(booted.elapsed()));
        let start = Start::Save {
            snapshot,
            payload: &run.file,
            payload_len: run.len,
        };
        let mut report = self.run(&boot, start)?;
        if self.kvm_broken(&report) {
            return Ok(Restored::KvmBroken);
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
            report = self.unsaved(&boot, run, left())?;
        }
        self.tidy_cache(cache, Some(&identity.path));
        if report.saved && report.interrupted.is_none() && report.timed_out.is_none() {
            // The guest stopped once saved: the run goes on from the
            // snapshot (or, should that fail, from a boot that makes none).
            if let Some(snapshot) = identity.open() {
                self.trace.log(|| "restoring the snapshot just made".into());
                match self.restore(identity, &snapshot, run, left())? {
                    Restored::Failed => {}
                    done => return Ok(done),
                }
            }
            report = self.unsaved(&boot, run, left())?;
        }
        Ok(Restored::Ran(self.outcome(&report)))
    }

    /// A boot from `boot` that makes no snapshot: the guest parks and is
    /// given the run at once, within what is `left` of `-timeout`.
    fn unsaved(&mut self, boot: &File, run: &RunArchive, left: Option<Duration>) -> Result<Report> {
        let start = Start::Save {
            snapshot: None,
            payload: &run.file,
            payload_len: run.len,
        };
        self.run_within(boot, start, left)
    }

    /// Restores `snapshot` (of `identity`) and runs the run in it. A
    /// restore that fails before the guest resumed removes the snapshot.
    fn restore(
        &mut self,
        identity: &Identity,
        snapshot: &File,
        run: &RunArchive,
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
                        payload: &run.file,
                        payload_len: run.len,
                    },
                    left,
                )?;
                if self.kvm_broken(&report) {
                    return Ok(Restored::KvmBroken);
                }
                match report.restore_failure {
                    None => {
                        identity.restored();
                        self.restored = true;
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
pub(super) fn qemu_failed_before_parking(report: &Report) -> bool {
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

/// The run's archive: its file (sized as the run disk, when the guest
/// has one) and the archive's own length.
pub(super) struct RunArchive {
    file: File,
    len: u64,
}

/// Why a warm start boots cold, in words for `-debug`.
fn why_cold(identity: &Identity) -> String {
    if identity.given_up() {
        "cold boot: this guest failed twice to be saved or restored; no snapshot is made".into()
    } else {
        format!(
            "cold boot: no snapshot {} yet, making it",
            identity.path.display()
        )
    }
}

/// How a restore went.
pub(super) enum Restored {
    /// The run ran in the restored guest.
    Ran(Outcome),
    /// KVM turned out broken: the run is to be repeated under emulation.
    KvmBroken,
    /// The restore failed before the guest resumed; the snapshot is gone.
    Failed,
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::ExitStatusExt;

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
}
