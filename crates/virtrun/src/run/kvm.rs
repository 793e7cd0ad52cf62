//! KVM: whether to try it, and the marker that it failed on this host
//! since it booted (so later runs go straight to emulation).

use crate::config::Config;
use crate::inspect::elf::Arch;

/// Whether to try KVM for a guest of `arch`: the host's own architecture,
/// `/dev/kvm` usable, not disabled, and not found broken earlier since the
/// host booted.
pub(super) fn use_kvm(config: &Config, arch: Arch) -> bool {
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
pub(super) fn kvm_known_broken() -> Option<std::path::PathBuf> {
    let boot_id = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").ok()?;
    Some(crate::cache::dir()?.join(format!("kvm-broken-{}", boot_id.trim())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Parsed, Sources, parse};
    use std::path::PathBuf;

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
