//! The snapshot handover: the guest parked at the save point is saved
//! (or was restored), then given fresh entropy, the clock and the run.

use super::*;
use crate::trace::Trace;
use crate::vm::qmp::Qmp;
use crate::vm::snapshot::Pending;
use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::sync::{Arc, Mutex};
use std::thread::{self};
use std::time::Instant;
use virtrun_protocol::{Frame, Resume};

/// What is handed to the guest on the control channel before the run
/// starts: a snapshot taken when it parks (`Start::Save`), the host's
/// entropy and clock, the run's archive.
pub(super) struct Handover {
    pub(super) save: Mutex<Option<(UnixStream, Pending)>>,
    /// Where the device state is saved to.
    pub(super) migration: String,
    /// QEMU, stopped once the guest is saved.
    pub(super) qemu_pid: libc::pid_t,
    pub(super) payload: Option<(std::fs::File, u64)>,
    /// The payload is on the run disk: only its length is sent.
    pub(super) on_disk: bool,
    pub(super) trace: Trace,
}

impl Handover {
    pub(super) fn new(
        start: Start<'_>,
        qmp: Option<UnixStream>,
        migration: String,
        qemu_pid: libc::pid_t,
        on_disk: bool,
        trace: &Trace,
    ) -> Result<Handover, SuperviseError> {
        let clone = |f: &std::fs::File| f.try_clone().map_err(SuperviseError::Channels);
        let (save, payload) = match (start, qmp) {
            (
                Start::Save {
                    snapshot,
                    payload,
                    payload_len,
                },
                qmp,
            ) => (qmp.zip(snapshot), Some((clone(payload)?, payload_len))),
            (
                Start::Restore {
                    payload,
                    payload_len,
                    ..
                },
                _,
            ) => (None, Some((clone(payload)?, payload_len))),
            _ => (None, None),
        };
        Ok(Handover {
            save: Mutex::new(save),
            migration,
            qemu_pid,
            payload,
            on_disk,
            trace: trace.clone(),
        })
    }

    /// The guest parked: saves it when that is asked for, and then QEMU
    /// is stopped (returns true); otherwise, or when saving failed (which
    /// costs only the snapshot), lets it go on.
    pub(super) fn parked(&self, control: &ControlWriter) -> io::Result<bool> {
        let save = lock(&self.save).take();
        if let Some((qmp, snapshot)) = save {
            let started = Instant::now();
            let mut qmp = Qmp::connect(qmp, Instant::now() + SAVE_DEADLINE);
            let saved = qmp
                .as_mut()
                .map_err(|e| io::Error::new(e.kind(), e.to_string()))
                .and_then(|qmp| qmp.save(&self.migration))
                .and_then(|()| snapshot.commit());
            match saved {
                Ok(path) => {
                    self.trace.log(|| {
                        format!(
                            "snapshot saved in {:.0?}: {}",
                            started.elapsed(),
                            path.display()
                        )
                    });
                    // The guest's memory is the snapshot now: it must not
                    // run on. SAFETY: kill(2) on QEMU, our child, not yet
                    // reaped (it is waited for only once it ended, and it
                    // is paused). No memory involved.
                    unsafe { libc::kill(self.qemu_pid, libc::SIGKILL) };
                    return Ok(true);
                }
                Err(e) => {
                    self.trace.log(|| format!("no snapshot saved: {e}"));
                    if let Ok(qmp) = &mut qmp {
                        qmp.cont()?;
                    }
                }
            }
        }
        self.go_on(control).map(|()| false)
    }

    /// Lets the guest go on: the host's entropy and clock, then the run,
    /// without waiting for the guest in between. The guest says
    /// [`Event::Resumed`] before it touches the run, so a restore that
    /// fails is still told apart from a run that failed. Sent from a thread
    /// of its own: the control reader must go on reading meanwhile.
    pub(super) fn go_on(&self, control: &ControlWriter) -> io::Result<()> {
        let payload = match &self.payload {
            Some((file, len)) => Some((file.try_clone()?, *len)),
            None => None,
        };
        let on_disk = self.on_disk;
        let control = Arc::clone(control);
        let trace = self.trace.clone();
        thread::spawn(move || {
            let sent = resume(&control).and_then(|()| send_payload(&control, payload, on_disk));
            trace.log(|| format!("run handed over: {sent:?} bytes"));
        });
        Ok(())
    }
}

/// Tells the guest to go on as of now: the host's entropy and clock.
pub(super) fn resume(control: &Mutex<UnixStream>) -> io::Result<()> {
    let mut seed = [0u8; 32];
    // SAFETY: getrandom(2) writes at most `seed.len()` bytes into `seed`.
    let n = unsafe { libc::getrandom(seed.as_mut_ptr().cast(), seed.len(), 0) };
    if n != seed.len() as isize {
        return Err(io::Error::other("no entropy from the host"));
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let frame = Frame::Resume(Resume {
        seed,
        secs: now.as_secs() as i64,
        nanos: now.subsec_nanos(),
    });
    lock(control).write_all(&frame.encode())
}

/// Sends the run's archive (none: it was in the initramfs; only its length
/// when it is on the run disk).
pub(super) fn send_payload(
    control: &Mutex<UnixStream>,
    payload: Option<(std::fs::File, u64)>,
    on_disk: bool,
) -> io::Result<u64> {
    let mut c = lock(control);
    let Some((mut payload, len)) = payload else {
        c.write_all(&Frame::Payload(0).encode())?;
        return Ok(0);
    };
    c.write_all(&Frame::Payload(len).encode())?;
    if on_disk {
        return Ok(len);
    }
    let mut from =
        std::io::Seek::seek(&mut payload, io::SeekFrom::Start(0)).map(|_| payload.take(len))?;
    let sent = io::copy(&mut from, &mut *c)?;
    if sent != len {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "the run's archive shrank",
        ));
    }
    Ok(sent)
}
