//! Turns what happened into virtrun's exit code and its one-line message
//! (docs/reference.md#exit-codes, the exit code table). Pure: a [`Report`] in,
//! an [`Outcome`] out.

use crate::vm::supervisor::Report;

/// Exit code of every failure that is not the binary's own.
pub const FAILURE: u8 = 255;

/// Exit code when `-timeout` expired, as timeout(1) has it.
pub const TIMED_OUT: u8 = 124;

/// virtrun's exit code and what to tell the user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// virtrun's exit code.
    pub code: u8,
    /// The line for stderr, if any.
    pub message: Option<String>,
}

impl Outcome {
    fn fail(message: String) -> Self {
        Outcome {
            code: FAILURE,
            message: Some(message),
        }
    }
}

/// Decides the outcome of a run, most specific cause first. `doubt` names a
/// driver that may be missing, for when the guest never answered.
pub fn decide(report: &Report, doubt: Option<&str>) -> Outcome {
    if let Some(limit) = report.timed_out {
        let doing = if report.started {
            "running the binary"
        } else {
            "booting the guest"
        };
        return Outcome {
            code: TIMED_OUT,
            message: Some(format!("timed out after {limit:?} while {doing}")),
        };
    }
    if let Some(sig) = report.interrupted {
        return Outcome {
            code: 128 + sig as u8,
            message: Some(format!(
                "interrupted by {}: guest stopped",
                signal_name(sig)
            )),
        };
    }
    if let Some(e) = &report.protocol_error {
        return Outcome::fail(format!(
            "guest broke the protocol: {e}; the run was stopped"
        ));
    }
    if report.oom {
        return Outcome::fail("guest ran out of memory".into());
    }
    if let Some(panic) = &report.panic {
        return Outcome::fail(format!("guest kernel panicked: {panic}"));
    }
    if let Some(code) = report.exit_code {
        if let Some(err) = report.host_errors.first() {
            return Outcome::fail(format!("output file from the guest: {err}"));
        }
        if let Some(err) = report.init_errors.first() {
            return Outcome::fail(format!("guest init failed: {err}"));
        }
        return Outcome {
            code: code as u8,
            message: report
                .signaled
                .map(|sig| format!("binary killed by signal {} ({sig})", signal_name(sig))),
        };
    }
    if let Some(err) = report.host_errors.first() {
        return Outcome::fail(format!("output file from the guest: {err}"));
    }
    if let Some(why) = &report.unpack_failed {
        return Outcome::fail(format!(
            "the guest kernel could not unpack the initramfs ({why}): the binary and its files \
             may not fit in the guest's memory; give it more with -memory"
        ));
    }
    if let Some(fatal) = &report.fatal {
        return Outcome::fail(format!("guest init failed: {fatal}"));
    }
    let qemu_failed = report.qemu_status.is_some_and(|s| !s.success());
    let qemu_said = report
        .qemu_stderr
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty());
    match (qemu_failed, qemu_said) {
        (true, Some(said)) => Outcome::fail(format!("QEMU failed: {said}")),
        (true, None) => Outcome::fail(format!(
            "QEMU failed: {}",
            report
                .qemu_status
                .map(|s| s.to_string())
                .unwrap_or_default()
        )),
        _ => Outcome::fail(match doubt {
            Some(doubt) => format!(
                "guest did not report an exit code: {doubt} (try -transport isa, or -verbose \
                 to see the kernel log)"
            ),
            None => "guest did not report an exit code: the kernel may lack support for the \
                     console devices of this -transport (try -transport isa, or -verbose to see \
                     the kernel log)"
                .into(),
        }),
    }
}

/// The conventional name of a Linux signal number.
pub fn signal_name(sig: i32) -> String {
    const NAMES: [&str; 31] = [
        "SIGHUP",
        "SIGINT",
        "SIGQUIT",
        "SIGILL",
        "SIGTRAP",
        "SIGABRT",
        "SIGBUS",
        "SIGFPE",
        "SIGKILL",
        "SIGUSR1",
        "SIGSEGV",
        "SIGUSR2",
        "SIGPIPE",
        "SIGALRM",
        "SIGTERM",
        "SIGSTKFLT",
        "SIGCHLD",
        "SIGCONT",
        "SIGSTOP",
        "SIGTSTP",
        "SIGTTIN",
        "SIGTTOU",
        "SIGURG",
        "SIGXCPU",
        "SIGXFSZ",
        "SIGVTALRM",
        "SIGPROF",
        "SIGWINCH",
        "SIGIO",
        "SIGPWR",
        "SIGSYS",
    ];
    usize::try_from(sig - 1)
        .ok()
        .and_then(|i| NAMES.get(i))
        .map_or_else(|| format!("SIG{sig}"), |n| n.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::ExitStatusExt;
    use std::process::ExitStatus;

    fn exited(code: i32) -> Report {
        Report {
            exit_code: Some(code),
            qemu_status: Some(ExitStatus::from_raw(0)),
            ..Report::default()
        }
    }

    #[test]
    fn binary_exit_code_passes_through() {
        assert_eq!(
            decide(&exited(0), None),
            Outcome {
                code: 0,
                message: None
            }
        );
        assert_eq!(decide(&exited(55), None).code, 55);
    }

    #[test]
    fn signal_death_is_named() {
        let mut r = exited(137);
        r.signaled = Some(9);
        let o = decide(&r, None);
        assert_eq!(o.code, 137);
        assert_eq!(o.message.unwrap(), "binary killed by signal SIGKILL (9)");
    }

    #[test]
    fn oom_wins_over_the_kill_signal() {
        let mut r = exited(137);
        r.signaled = Some(9);
        r.oom = true;
        assert_eq!(
            decide(&r, None),
            Outcome::fail("guest ran out of memory".into())
        );
    }

    #[test]
    fn panic_is_reported() {
        let r = Report {
            panic: Some("Kernel panic - not syncing: sysrq triggered crash".into()),
            ..Report::default()
        };
        let o = decide(&r, None);
        assert_eq!(o.code, 255);
        assert!(
            o.message
                .unwrap()
                .starts_with("guest kernel panicked: Kernel panic")
        );
    }

    #[test]
    fn qemu_error_is_passed_on() {
        let r = Report {
            qemu_status: Some(ExitStatus::from_raw(1 << 8)),
            qemu_stderr: "\nqemu-system-x86_64: -machine foo: unsupported machine type\n".into(),
            ..Report::default()
        };
        assert_eq!(
            decide(&r, None).message.unwrap(),
            "QEMU failed: qemu-system-x86_64: -machine foo: unsupported machine type"
        );
    }

    #[test]
    fn missing_marker_hints_at_the_transport() {
        let r = Report {
            qemu_status: Some(ExitStatus::from_raw(0)),
            ..Report::default()
        };
        let o = decide(&r, None);
        assert_eq!(o.code, 255);
        assert!(o.message.unwrap().contains("-transport"));
    }

    #[test]
    fn init_failure_is_named() {
        let mut r = exited(255);
        r.init_errors
            .push("exec /main: No such file or directory".into());
        assert_eq!(
            decide(&r, None).message.unwrap(),
            "guest init failed: exec /main: No such file or directory"
        );
    }

    #[test]
    fn the_inits_last_words_end_a_run_without_exit_code() {
        let r = Report {
            qemu_status: Some(ExitStatus::from_raw(0)),
            fatal: Some("no virtio console: virtio_pci is not loaded".into()),
            ..Report::default()
        };
        assert_eq!(
            decide(&r, Some("virtio_pci may be missing")),
            Outcome::fail("guest init failed: no virtio console: virtio_pci is not loaded".into())
        );
    }

    #[test]
    fn an_initramfs_the_kernel_could_not_unpack_says_why() {
        let r = Report {
            qemu_status: Some(ExitStatus::from_raw(0)),
            fatal: Some("read /virtrun.boot: No such file or directory (os error 2)".into()),
            unpack_failed: Some("write error".into()),
            ..Report::default()
        };
        let message = decide(&r, None).message.unwrap();
        assert!(
            message.starts_with("the guest kernel could not unpack the initramfs (write error)")
                && message.ends_with("give it more with -memory"),
            "{message}"
        );
    }

    #[test]
    fn a_file_that_broke_the_channel_is_named_without_exit_code() {
        let r = Report {
            qemu_status: Some(ExitStatus::from_raw(0)),
            host_errors: vec!["/o/cover.out: got 3 of 1099511627776 bytes".into()],
            ..Report::default()
        };
        assert_eq!(
            decide(&r, None).message.unwrap(),
            "output file from the guest: /o/cover.out: got 3 of 1099511627776 bytes"
        );
    }

    #[test]
    fn a_protocol_breach_wins_over_the_exit_code() {
        let mut r = exited(0);
        r.protocol_error = Some("an event line is too long".into());
        let o = decide(&r, None);
        assert_eq!(o.code, 255);
        assert!(o.message.unwrap().starts_with("guest broke the protocol: "));
    }

    #[test]
    fn timeout_says_what_the_guest_was_doing() {
        let mut r = Report {
            timed_out: Some(std::time::Duration::from_secs(20)),
            ..Report::default()
        };
        assert_eq!(
            decide(&r, None),
            Outcome {
                code: 124,
                message: Some("timed out after 20s while booting the guest".into())
            }
        );
        r.started = true;
        assert!(
            decide(&r, None)
                .message
                .unwrap()
                .ends_with("while running the binary")
        );
    }

    #[test]
    fn interrupt_before_the_guest_answers() {
        let r = Report {
            interrupted: Some(2),
            ..Report::default()
        };
        assert_eq!(decide(&r, None).code, 130);
    }

    #[test]
    fn signal_names() {
        assert_eq!(signal_name(2), "SIGINT");
        assert_eq!(signal_name(15), "SIGTERM");
        assert_eq!(signal_name(64), "SIG64");
        assert_eq!(signal_name(0), "SIG0");
    }
}
