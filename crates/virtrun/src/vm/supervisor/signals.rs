//! Signals to virtrun (forwarded to the guest, or stopping it), the
//! deadlines, and the KVM watchdog: the loop that waits for QEMU to end.

use super::*;
use crate::trace::Trace;
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM, SIGWINCH};
use signal_hook::iterator::Signals;
use std::io::{self, Write};
use std::process::{Child, ExitStatus};
use std::sync::mpsc;
use std::sync::{Arc, OnceLock};
use std::thread::{self};
use std::time::{Duration, Instant};
use virtrun_protocol::Frame;

/// Signals virtrun passes on to the binary. Register them with
/// [`catch_signals`] before anything that must be cleaned up exists.
pub(super) const FORWARDED: [i32; 3] = [SIGINT, SIGTERM, SIGHUP];

/// Catches the forwarded signals from now on, so that none of them kills
/// virtrun before its temporary files are gone.
/// With `tty`, also `SIGWINCH`: a new size for the binary's terminal.
pub fn catch_signals(tty: bool) -> io::Result<Signals> {
    let signals = Signals::new(FORWARDED)?;
    if tty {
        signals.add_signal(SIGWINCH)?;
    }
    Ok(signals)
}

/// How long a guest under KVM may stay silent before KVM is taken to be
/// broken. A working KVM reaches the init in about a second; a broken one
/// (present, opens, but the guest crawls or dies with "KVM internal error"
/// while QEMU keeps running) would otherwise hang forever.
pub(super) const KVM_WATCHDOG: Duration = Duration::from_secs(5);

/// What QEMU prints when KVM cannot run the guest (compared in lower case;
/// any error naming KVM counts too).
pub(super) const KVM_ERRORS: [&str; 4] = [
    "kvm",
    "emulation failure",
    "failed to set msr",
    "failed to get msr",
];

/// What the supervisor watches while QEMU runs.
pub(super) struct Watch<'a> {
    pub(super) kvm: bool,
    pub(super) restoring: bool,
    /// Under -gdb: when gdb let the guest run, once it did.
    pub(super) held: Option<Arc<OnceLock<Instant>>>,
    pub(super) timeout: Option<Duration>,
    pub(super) control: Option<ControlWriter>,
    pub(super) state: &'a State,
    pub(super) trace: &'a Trace,
}

impl Watch<'_> {
    /// Waits for QEMU to end, meanwhile forwarding signals, enforcing the
    /// deadline, stopping a guest that broke the protocol and a KVM guest
    /// that shows no life.
    pub(super) fn until_exit(&self, mut child: Child, signals: &mut Signals) -> Option<ExitStatus> {
        let pid = child.id() as libc::pid_t;
        let (exited_tx, exited) = mpsc::channel();
        thread::spawn(move || {
            let _ = exited_tx.send(child.wait().ok());
        });
        // SAFETY: kill(2) on QEMU, which we have not reaped yet; no memory involved.
        let kill_qemu = || unsafe {
            libc::kill(pid, libc::SIGKILL);
        };
        let start = Instant::now();
        // The time the guest has been let run.
        let running = || match &self.held {
            Some(released) => released.get().map(Instant::elapsed),
            None => Some(start.elapsed()),
        };
        let report = &self.state.report;
        let mut forwarded = false;
        // A new size for the binary's terminal, until the guest can take it.
        let mut resized = false;
        loop {
            match exited.recv_timeout(TICK) {
                Ok(status) => return status,
                Err(mpsc::RecvTimeoutError::Disconnected) => return None,
                Err(mpsc::RecvTimeoutError::Timeout) => {}
            }
            for sig in signals.pending() {
                if sig == SIGWINCH {
                    resized = true;
                    continue;
                }
                let sent = !forwarded && self.forward(sig);
                self.trace
                    .log(|| format!("got signal {sig}, forwarded to the binary: {sent}"));
                if sent {
                    forwarded = true;
                } else {
                    lock(report).interrupted = Some(sig);
                    kill_qemu();
                }
            }
            if lock(report).protocol_error.is_some() {
                kill_qemu();
            }
            if resized {
                resized = !self.resize();
            }

            if self.restoring {
                let mut r = lock(report);
                if !r.resumed && r.restore_failure.is_none() && start.elapsed() >= RESTORE_DEADLINE
                {
                    r.restore_failure = Some(format!(
                        "no answer from the restored guest in {RESTORE_DEADLINE:?}"
                    ));
                }
                if !r.resumed && r.restore_failure.is_some() {
                    kill_qemu();
                }
            }
            if let Some(limit) = self.timeout
                && running().is_some_and(|t| t >= limit)
                && lock(report).timed_out.is_none()
            {
                lock(report).timed_out = Some(limit);
                kill_qemu();
            }
            if self.kvm {
                let mut r = lock(report);
                if !r.alive
                    && r.kvm_failure.is_none()
                    && running().is_some_and(|t| t >= KVM_WATCHDOG)
                {
                    r.kvm_failure = Some(format!(
                        "no sign of life from the guest in {KVM_WATCHDOG:?}"
                    ));
                }
                if !r.alive && r.kvm_failure.is_some() {
                    kill_qemu();
                }
            }
        }
    }

    /// Sends the terminal's size to the binary's, if the guest is ready to
    /// take it.
    pub(super) fn resize(&self) -> bool {
        let Ok(size) = crate::vm::terminal::size(crate::vm::terminal::STDIN) else {
            return true;
        };
        self.send_when_ready(&Frame::Resize(size))
    }

    /// Sends `sig` to the binary, if the guest is ready to take it.
    pub(super) fn forward(&self, sig: i32) -> bool {
        self.send_when_ready(&Frame::Signal(sig as u8))
    }

    /// Sends `frame`, if the guest is ready to take it.
    pub(super) fn send_when_ready(&self, frame: &Frame) -> bool {
        let ready = lock(&self.state.flow.0).ready;
        match &self.control {
            Some(c) if ready => {
                let mut c = lock(c);
                c.write_all(&frame.encode()).is_ok()
            }
            _ => false,
        }
    }
}
