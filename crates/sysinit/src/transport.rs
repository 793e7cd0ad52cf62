//! Whether the virtio console can work at all: a device QEMU gave the guest
//! that no driver took means a driver module was not loaded, and no port
//! will ever appear. Telling that at once turns a long wait for ports into
//! one clear error.
//!
//! Drivers bind synchronously: a built-in driver before the init starts, a
//! module while `finit_module` runs. So once the modules are loaded, what
//! sysfs shows is final.

use std::path::Path;

/// PCI vendor id of virtio devices.
const VIRTIO_PCI_VENDOR: &str = "0x1af4";
/// PCI device ids of virtio devices (legacy and modern).
const VIRTIO_PCI_DEVICES: std::ops::RangeInclusive<u32> = 0x1000..=0x107f;
/// Device id of a virtio console on the virtio bus.
const VIRTIO_ID_CONSOLE: &str = "0x0003";

/// Why the guest's virtio console cannot work, naming the missing driver;
/// `None` when a virtio console device has its driver. Needs `/sys`.
pub fn missing_driver() -> Option<String> {
    missing_driver_in(Path::new("/sys"))
}

/// [`missing_driver`] on the sysfs at `sys`.
pub fn missing_driver_in(sys: &Path) -> Option<String> {
    let unbound = |dev: &Path| !dev.join("driver").exists();
    let attr = |dev: &Path, name: &str| {
        std::fs::read_to_string(dev.join(name))
            .map(|s| s.trim().to_string())
            .unwrap_or_default()
    };
    let devices = |bus: &str| -> Vec<std::path::PathBuf> {
        let mut found: Vec<_> = std::fs::read_dir(sys.join("bus").join(bus).join("devices"))
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .collect();
        found.sort();
        found
    };
    let name = |dev: &Path| {
        dev.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    };
    let is_virtio_pci = |dev: &Path| {
        attr(dev, "vendor") == VIRTIO_PCI_VENDOR
            && u32::from_str_radix(attr(dev, "device").trim_start_matches("0x"), 16)
                .is_ok_and(|id| VIRTIO_PCI_DEVICES.contains(&id))
    };
    let pci: Vec<_> = devices("pci")
        .into_iter()
        .filter(|d| is_virtio_pci(d))
        .collect();
    if let Some(dev) = pci.iter().find(|d| unbound(d)) {
        return Some(format!(
            "the virtio PCI device {} has no driver: the virtio_pci module is not loaded",
            name(dev)
        ));
    }
    // A machine has virtio-mmio slots whether or not anything is behind
    // them (arm64's `virt` has 32): they only matter without virtio PCI.
    let mmio = devices("platform")
        .into_iter()
        .any(|d| name(&d).contains("virtio_mmio") || name(&d).starts_with("virtio-mmio"));
    if pci.is_empty() && mmio && !sys.join("bus/platform/drivers/virtio-mmio").exists() {
        return Some(
            "the virtio-mmio devices have no driver: the virtio_mmio module is not loaded".into(),
        );
    }
    if !sys.join("bus/virtio").exists() {
        return Some("the kernel has no virtio bus: the virtio module is not loaded".into());
    }
    let consoles: Vec<_> = devices("virtio")
        .into_iter()
        .filter(|d| attr(d, "device") == VIRTIO_ID_CONSOLE)
        .collect();
    if consoles.is_empty() {
        return Some("there is no virtio console device on the virtio bus".into());
    }
    if consoles.iter().all(|d| unbound(d)) {
        return Some(format!(
            "the virtio console device {} has no driver: the virtio_console module is not loaded",
            name(&consoles[0])
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fake sysfs with `files` (path, content) and directories `dirs`
    /// (a `driver` link counts by its existence alone).
    fn sysfs(files: &[(&str, &str)], dirs: &[&str]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (path, content) in files {
            let p = dir.path().join(path);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, content).unwrap();
        }
        for d in dirs {
            std::fs::create_dir_all(dir.path().join(d)).unwrap();
        }
        dir
    }

    const PCI_DEV: (&str, &str) = ("bus/pci/devices/0000:00:01.0/vendor", "0x1af4\n");
    const PCI_ID: (&str, &str) = ("bus/pci/devices/0000:00:01.0/device", "0x1003\n");

    fn check(files: &[(&str, &str)], dirs: &[&str]) -> Option<String> {
        missing_driver_in(sysfs(files, dirs).path())
    }

    #[test]
    fn names_the_first_missing_driver() {
        let why = check(&[PCI_DEV, PCI_ID], &[]).unwrap();
        assert!(
            why.contains("0000:00:01.0") && why.contains("virtio_pci"),
            "{why}"
        );
        let why = check(
            &[("bus/platform/devices/a003e00.virtio_mmio/uevent", "")],
            &[],
        )
        .unwrap();
        assert!(why.contains("virtio_mmio"), "{why}");
        // Over PCI, the empty virtio-mmio slots of the machine do not count.
        let why = check(
            &[
                PCI_DEV,
                PCI_ID,
                ("bus/platform/devices/a003e00.virtio_mmio/uevent", ""),
            ],
            &["bus/pci/devices/0000:00:01.0/driver"],
        )
        .unwrap();
        assert!(why.contains("no virtio bus"), "{why}");
        let why = check(&[], &[]).unwrap();
        assert!(why.contains("no virtio bus"), "{why}");
        let why = check(&[], &["bus/virtio/devices"]).unwrap();
        assert!(why.contains("no virtio console device"), "{why}");
        let why = check(&[("bus/virtio/devices/virtio0/device", "0x0003\n")], &[]).unwrap();
        assert!(why.contains("virtio_console"), "{why}");
    }

    #[test]
    fn a_bound_console_is_fine() {
        let bound = [
            "bus/pci/devices/0000:00:01.0/driver",
            "bus/virtio/devices/virtio0/driver",
            "bus/platform/drivers/virtio-mmio",
        ];
        assert_eq!(
            check(
                &[
                    PCI_DEV,
                    PCI_ID,
                    ("bus/platform/devices/a003e00.virtio_mmio/uevent", ""),
                    ("bus/virtio/devices/virtio0/device", "0x0003\n"),
                ],
                &bound
            ),
            None
        );
        // Another vendor's device without a driver is none of our business.
        assert_eq!(
            check(
                &[
                    ("bus/pci/devices/0000:00:02.0/vendor", "0x8086\n"),
                    ("bus/pci/devices/0000:00:02.0/device", "0x1000\n"),
                    ("bus/virtio/devices/virtio0/device", "0x0003\n"),
                ],
                &["bus/virtio/devices/virtio0/driver"]
            ),
            None
        );
    }
}
