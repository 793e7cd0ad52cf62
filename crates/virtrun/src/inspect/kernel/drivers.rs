//! The driver catalogue: what a transport, the host's files, modules on demand
//! and a NIC need of the guest kernel.

use crate::config::Transport;

/// A driver a transport needs in the guest, and the config option that
/// builds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Driver {
    /// Module name.
    pub module: &'static str,
    /// Kernel config option.
    pub option: &'static str,
    /// What needs it, and so what helps when it is missing.
    pub purpose: Purpose,
}

/// Why a run needs a driver.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// The channels of a virtio transport.
    Transport,
    /// The host's files (`-hostRoot`, `-share`): 9p and the overlay.
    Share,
    /// The module tree's image (modules on demand): a virtio disk and ext4.
    Modules,
    /// The NIC of `-net user`.
    Net,
}

pub(super) const VIRTIO_PCI: Driver = Driver {
    module: "virtio_pci",
    option: "CONFIG_VIRTIO_PCI",
    purpose: Purpose::Transport,
};
pub(super) const VIRTIO_MMIO: Driver = Driver {
    module: "virtio_mmio",
    option: "CONFIG_VIRTIO_MMIO",
    purpose: Purpose::Transport,
};

/// The drivers the channels of `transport` need, in load order.
pub fn transport_drivers(transport: Transport) -> &'static [Driver] {
    const CONSOLE: Driver = Driver {
        module: "virtio_console",
        option: "CONFIG_VIRTIO_CONSOLE",
        purpose: Purpose::Transport,
    };
    match transport {
        Transport::Isa => &[],
        Transport::Pci => &[VIRTIO_PCI, CONSOLE],
        Transport::Mmio => &[VIRTIO_MMIO, CONSOLE],
    }
}

/// The driver of the disk that carries a warm run's files.
pub const RUN_DISK_DRIVER: Driver = Driver {
    module: "virtio_blk",
    option: "CONFIG_VIRTIO_BLK",
    purpose: Purpose::Transport,
};

/// What a run needs of the guest kernel besides its transport.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Needs {
    /// The host's files over 9p (`-hostRoot`, `-share`).
    pub share: bool,
    /// The overlay file system (`-hostRoot`).
    pub overlay: bool,
    /// The module tree's image (modules on demand).
    pub modules: bool,
    /// A NIC (`-net user`).
    pub net: bool,
}

/// The drivers a run needs: the transport's, then for the host's files
/// 9p over virtio (on PCI unless the transport is mmio), the overlay file
/// system, the module tree's disk, the NIC.
pub fn needed_drivers(transport: Transport, needs: Needs) -> Vec<Driver> {
    let Needs {
        share,
        overlay,
        modules,
        net,
    } = needs;
    let mut drivers = transport_drivers(transport).to_vec();
    let bus = match transport {
        Transport::Mmio => VIRTIO_MMIO,
        Transport::Pci | Transport::Isa => VIRTIO_PCI,
    };
    if (share || modules || net) && !drivers.iter().any(|d| d.module == bus.module) {
        drivers.push(Driver {
            purpose: if share {
                Purpose::Share
            } else if modules {
                Purpose::Modules
            } else {
                Purpose::Net
            },
            ..bus
        });
    }
    if modules {
        drivers.push(Driver {
            module: "virtio_blk",
            option: "CONFIG_VIRTIO_BLK",
            purpose: Purpose::Modules,
        });
        // ext4 of 6.1 loads crc32c at every mount, also without
        // metadata checksums; with crypto as modules it would ask for it
        // before the helper has a tree to take it from.
        drivers.push(Driver {
            module: "crc32c_generic",
            option: "CONFIG_CRYPTO_CRC32C",
            purpose: Purpose::Modules,
        });
        drivers.push(Driver {
            module: "ext4",
            option: "CONFIG_EXT4_FS",
            purpose: Purpose::Modules,
        });
    }
    if share {
        drivers.push(Driver {
            module: "9pnet_virtio",
            option: "CONFIG_NET_9P_VIRTIO",
            purpose: Purpose::Share,
        });
        drivers.push(Driver {
            module: "9p",
            option: "CONFIG_9P_FS",
            purpose: Purpose::Share,
        });
    }
    if overlay {
        drivers.push(Driver {
            module: "overlay",
            option: "CONFIG_OVERLAY_FS",
            purpose: Purpose::Share,
        });
    }
    if net {
        drivers.push(Driver {
            module: "virtio_net",
            option: "CONFIG_VIRTIO_NET",
            purpose: Purpose::Net,
        });
    }
    drivers
}
