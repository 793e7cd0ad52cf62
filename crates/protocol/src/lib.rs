//! The wire contract between the virtrun host and its guest init.
//!
//! This crate is the only place where the host and the guest agree on anything:
//! which device carries which stream, where the init finds its configuration, how
//! stdin and signals travel to the guest and how events (the exit code above all)
//! travel back. Both sides depend on it; neither copies its constants.
//!
//! # Channels
//!
//! The guest has few devices to talk through; they are assigned once, here:
//!
//! | role | serial layout (`isa`) | virtio layout (`pci`, `mmio`) |
//! |---|---|---|
//! | kernel log, panics, init's last words | UART 0 (`ttyS0`) | the built-in UART (`ttyS0`/`ttyAMA0`) |
//! | control (both ways) | UART 1 (`ttyS1`) | virtio serial port `virtrun.control` |
//! | the binary's stdout | UART 2 (`ttyS2`) | virtio serial port `virtrun.stdout` |
//! | the binary's stderr | UART 3 (`ttyS3`) | virtio serial port `virtrun.stderr` |
//!
//! The kernel log stays on a UART built into every stock kernel so that a panic
//! before any module is loaded is still seen. The control channel is never the
//! kernel console: what the binary or the kernel print cannot fake an event.
//!
//! Host → guest on the control channel is framed (see [`Frame`]) because a UART
//! cannot express end-of-file. Guest → host on the control channel is text, one
//! event per line (see [`Event`]), so it stays readable in a raw capture.
//!
//! # One save point
//!
//! The default init boots as every run of its guest does — the boot modules
//! from [`TRANSPORT_MODULES_DIR`], the module tree ([`BootConfig`]), the
//! channels — then says [`Event::Parked`] and waits. That is where a
//! snapshot is taken; a restored guest goes on from there. The host answers
//! with [`Frame::Resume`] (its entropy and clock, which the guest takes
//! before it says [`Event::Resumed`]) and [`Frame::Payload`]: the run's
//! files, as a cpio archive on the control channel or on the run's disk
//! ([`RUN_DISK_SERIAL`]), or none when a cold boot's initramfs held them.
//! Only then does the init read the run's [`GuestConfig`], mount shares and
//! start the binary. Until [`Event::Resumed`] nothing of the run has been
//! handed over, so a restore that fails can still give way to a cold boot.
//!
//! # Standalone mode
//!
//! In standalone mode the binary is the init, and inits written for the original
//! Go tool expect its numbering of host ports:
//!
//! | port | carries | guest device (`isa`) | guest device (`pci`, `mmio`) |
//! |---|---|---|---|
//! | 0 ([`STANDALONE_CONSOLE_PORT`]) | kernel console: kernel log, the init's stderr, the exit marker | `ttyS0` | the built-in UART (`ttyS0`/`ttyAMA0`) |
//! | 1 ([`STANDALONE_STDOUT_PORT`]) | the binary's stdout | `ttyS1` | virtio console port number 1 (`hvc1`) |
//! | 2, 3, … | output files (go test profiles) | `ttyS2`, … | virtio console port 2, … (`hvc2`, …) |
//!
//! Port 0 is always the kernel console (`/dev/console` in the guest), on a UART
//! built into every stock kernel, so that an init started before its virtio
//! driver is loaded still has it. With virtio the host also puts a console on
//! virtio port 0 (`hvc0`, read like port 0), because the kernel numbers `hvcN`
//! in port order and the original's inits expect port N on `hvcN`. The init links each further port to
//! [`standalone_port_path`] (`/dev/virtrun1`, …), the names go test's output
//! flags are rewritten to, in argument order from port 2 on. The host writes
//! what arrives on a file port to the host file the flag named. All ports are
//! ttys: an init that makes one raw (and keeps it open, as an `hvc` tty
//! forgets its settings on its last close) says so with
//! [`RAW_PORT_PREAMBLE`] and its bytes pass unchanged; a port left in the
//! tty's default mode, as the original's inits leave theirs, has the tty's
//! `\n` → `\r\n` undone by the host. The exit marker is [`EXIT_MARKER`] or,
//! as the original's newer Go `sysinit` prints it, [`SYSINIT_EXIT_MARKER`].
//! The binary's arguments reach a standalone init through the kernel command
//! line, after `--`, as its `argv`.

//!
//! # Parts
//!
//! Where things are in the guest (paths, disks, the share's tag); the
//! channels and standalone ports; the configurations the init reads
//! ([`GuestConfig`], [`BootConfig`], [`LoaderConfig`]); [`Frame`]s and
//! [`Event`]s; the rules both sides apply to kernel modules' names
//! ([`module_name`]) and to `newc` archives ([`newc`]).
//!
//! Words used throughout, host and guest alike:
//! - *payload*: the user's binary and what it brings (its libraries, the
//!   `-addFile` files, its modules);
//! - *the run*: one execution of the payload in a guest; everything after
//!   the *save point* (where the guest *parks*, and where a snapshot is
//!   taken) belongs to it;
//! - *identity*: what a guest was booted from (kernel, QEMU, machine,
//!   memory, transport, NIC, init); a snapshot is keyed by it;
//! - *transport*: how host and guest talk: a *layout* of *channels* (the
//!   log, control, stdout, stderr) on ISA UARTs or virtio serial ports; a
//!   standalone init's numbered devices are *ports*;
//! - *frame*: what the host sends on the control channel; *event*: what
//!   the guest sends back, one line each;
//! - *output*: a file the binary writes in the guest that comes back to the
//!   host (go test's profiles, `LLVM_PROFILE_FILE`'s directory);
//! - *job*: the binary as a process: the leader of its own process group in
//!   PID 1's session.
#![deny(missing_docs)]

mod channels;
mod config;
mod event;
mod frame;
mod module;
pub mod newc;
mod paths;

pub use channels::*;
pub use config::*;
pub use event::*;
pub use frame::*;
pub use module::*;
pub use paths::*;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_round_trip_keeps_odd_bytes() {
        let cfg = GuestConfig {
            argv0: b"busybox".to_vec(),
            env: vec![b"RUST_LOG=debug".to_vec(), b"A=b c".to_vec()],
            outputs: vec![b"/tmp/virtrun-out/0".to_vec()],
            args: vec![
                b"a b".to_vec(),
                b"'\"\\".to_vec(),
                "ü€".as_bytes().to_vec(),
                b"".to_vec(),
                b"\n\xff".to_vec(),
            ],
            verbose: true,
            host_root: true,
            shares: vec![b"/home/u/src".to_vec(), b"/srv/a b".to_vec()],
            cwd: b"/home/u/src/pkg".to_vec(),
            exec: b"/tmp/go-build1/b001/pkg.test".to_vec(),
            bind_main: true,
            tty: Some(WindowSize {
                rows: 0x0a00,
                cols: 65535,
            }),
        };
        assert_eq!(GuestConfig::decode(&cfg.encode()).unwrap(), cfg);
    }

    #[test]
    fn boot_config_round_trip() {
        for layout in [Layout::Serial, Layout::Virtio] {
            for verbose in [false, true] {
                let cfg = BootConfig {
                    layout,
                    verbose,
                    modules_on_demand: !verbose,
                    run_disk: verbose,
                    user_net: !verbose,
                };
                assert_eq!(BootConfig::decode(&cfg.encode()).unwrap(), cfg);
            }
        }
        assert!(BootConfig::decode(b"verbose\x001\0").is_err());
        assert!(BootConfig::decode(b"layout\0tape\0").is_err());
    }

    #[test]
    fn loader_config_round_trip() {
        for cfg in [
            LoaderConfig {
                ports: 2,
                verbose: false,
            },
            LoaderConfig {
                ports: 31,
                verbose: true,
            },
        ] {
            assert_eq!(LoaderConfig::decode(&cfg.encode()).unwrap(), cfg);
        }
        assert!(LoaderConfig::decode(b"ports\0x\0").is_err());
        assert!(LoaderConfig::decode(b"verbose\x001\0").is_err());
        assert!(LoaderConfig::decode(b"ports\x003").is_err());
        assert!(LoaderConfig::decode(b"ports\x003\0odd\0").is_err());
    }

    #[test]
    fn config_rejects_garbage() {
        assert!(GuestConfig::decode(b"").is_err());
        assert!(GuestConfig::decode(b"verbose\0").is_err());
        assert!(GuestConfig::decode(b"verbose\x001").is_err());
        assert!(GuestConfig::decode(b"verbose\x001\0color\0red\0").is_err());
    }

    #[test]
    fn frames_round_trip_in_pieces() {
        let frames = vec![
            Frame::Stdin(b"a\nb".to_vec()),
            Frame::Stdin(vec![0xff; MAX_STDIN_FRAME]),
            Frame::Signal(2),
            Frame::StdinEof,
            Frame::Done,
            Frame::Resume(Resume {
                seed: [7; 32],
                secs: -3,
                nanos: 999_999_999,
            }),
            Frame::Payload(u64::MAX),
            Frame::Resize(WindowSize { rows: 24, cols: 80 }),
        ];
        let wire: Vec<u8> = frames.iter().flat_map(Frame::encode).collect();
        let mut buf = Vec::new();
        let mut got = Vec::new();
        for chunk in wire.chunks(3) {
            buf.extend_from_slice(chunk);
            while let Some((frame, used)) = Frame::decode(&buf).unwrap() {
                got.push(frame);
                buf.drain(..used);
            }
        }
        assert_eq!(got, frames);
        assert!(buf.is_empty());
    }

    #[test]
    fn oversized_or_unknown_frames_are_errors() {
        assert!(Frame::decode(&[1, 0xff, 0xff, 0, 0]).is_err());
        assert!(Frame::decode(&[9, 0, 0, 0, 0]).is_err());
        assert!(Frame::decode(&[3, 0, 0, 0, 0]).is_err());
        assert!(Frame::decode(&[5, 1, 0, 0, 0, 0]).is_err());
        assert!(Frame::decode(&[6, 4, 0, 0, 0, 0, 0, 0, 0]).is_err());
    }

    #[test]
    fn events_round_trip() {
        for ev in [
            Event::Parked,
            Event::Resumed,
            Event::Ready,
            Event::Started,
            Event::StdinAck(4096),
            Event::Signaled(9),
            Event::OutOfMemory,
            Event::Error("exec /main: ENOENT".into()),
            Event::ExitCode(0),
            Event::ExitCode(255),
            Event::ExitCode(-1),
            Event::File {
                id: 3,
                len: 1 << 33,
                name: "covcounters.a b".into(),
            },
            Event::File {
                id: 0,
                len: 0,
                name: String::new(),
            },
            Event::Streams {
                stdout: 100_000_000,
                stderr: 0,
            },
            Event::Times(GuestTimes {
                init: 1_900_000,
                started: 2_000_000,
                exited: 2_100_000,
                reported: 2_100_500,
            }),
        ] {
            assert_eq!(Event::parse(ev.to_string().as_bytes()), Some(ev));
        }
    }

    #[test]
    fn standalone_console_takes_either_marker() {
        assert_eq!(standalone_exit_code(b"VIRTRUN_EXIT_CODE: 3"), Some(3));
        assert_eq!(standalone_exit_code(b"PASSSYSINIT_EXIT_CODE: 0\r"), Some(0));
        assert_eq!(standalone_exit_code(b"SYSINIT_EXIT_CODE: -1"), Some(-1));
        assert_eq!(standalone_exit_code(b"SYSINIT_EXIT_CODE: x"), None);
        assert_eq!(standalone_exit_code(b"SYSINIT_EXIT_CODE 4"), None);
        assert_eq!(standalone_exit_code(b"hello"), None);
    }

    #[test]
    fn standalone_ports_are_named_like_the_original() {
        assert_eq!(
            standalone_port_path(STANDALONE_STDOUT_PORT),
            "/dev/virtrun1"
        );
        assert_eq!(standalone_port_path(2), "/dev/virtrun2");
    }

    #[test]
    fn an_error_message_cannot_fake_an_exit_code() {
        assert_eq!(
            Event::parse(b"VIRTRUN_ERROR: exec /tmp/VIRTRUN_EXIT_CODE: 7"),
            Some(Event::Error("exec /tmp/VIRTRUN_EXIT_CODE: 7".into()))
        );
    }

    #[test]
    fn exit_marker_found_after_unterminated_output() {
        assert_eq!(
            Event::parse(b"no newline hereVIRTRUN_EXIT_CODE: 42\r"),
            Some(Event::ExitCode(42))
        );
        assert_eq!(Event::parse(b"VIRTRUN_EXIT_CODE: x"), None);
        assert_eq!(Event::parse(b"hello"), None);
    }
}
