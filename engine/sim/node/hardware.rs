//! A simulated node's hardware: its model, PCI devices and disks, and how `/dev/sdX` names
//! follow the order the kernel finds disks in (the seed's USB stick that moved the Mac's SSD
//! from `/dev/sda` to `/dev/sdc`).

use super::*;

/// The hardware model of a node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HardwareModel {
    /// Intel NUC with an NVMe disk (and a GTX 1650 on `.20`).
    Nuc,
    /// Mac Mini with an Apple SSD on SATA.
    MacMini,
    /// Anything else (generic x86 box).
    Generic,
}

/// A PCI device relevant to the model (the GPU).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PciDevice {
    /// Vendor id (0x10de = NVIDIA).
    pub vendor_id: u16,
    /// Device id.
    pub device_id: u16,
    /// Product name.
    pub product: String,
}

/// A physical disk (fields of `block.DiskSpec`, minus the kernel name which depends on
/// enumeration order).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PhysicalDisk {
    /// Size in bytes.
    pub size: u64,
    /// Model.
    pub model: String,
    /// Serial.
    pub serial: String,
    /// WWID.
    pub wwid: String,
    /// Transport (`sata`, `nvme`, `usb`).
    pub transport: String,
    /// Bus path.
    pub bus_path: String,
    /// Rotational.
    pub rotational: bool,
    /// Read-only.
    pub readonly: bool,
    /// CD-ROM.
    pub cdrom: bool,
    /// NVMe (named `nvmeXnY`) rather than SCSI (`sdX`).
    pub nvme: bool,
}

/// A disk as `get disks` shows it (`block.DiskSpec`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Disk {
    /// Resource id: kernel device name (`sda`, `nvme0n1`).
    pub id: String,
    /// `/dev/<id>`.
    pub dev_path: String,
    /// Size in bytes.
    pub size: u64,
    /// Human size (`500 GB`).
    pub pretty_size: String,
    /// I/O size.
    pub io_size: u64,
    /// Sector size.
    pub sector_size: u64,
    /// Read-only.
    pub readonly: bool,
    /// CD-ROM.
    pub cdrom: bool,
    /// Model.
    pub model: String,
    /// Serial.
    pub serial: String,
    /// Modalias.
    pub modalias: String,
    /// WWID.
    pub wwid: String,
    /// Bus path.
    pub bus_path: String,
    /// Subsystem (`/sys/class/block`).
    pub sub_system: String,
    /// Transport.
    pub transport: String,
    /// Rotational.
    pub rotational: bool,
    /// Symlinks (`/dev/disk/by-id/...`).
    pub symlinks: Vec<String>,
    /// True if Talos runs from this disk (`systemdisk`).
    pub system_disk: bool,
}

/// Static description of a node's hardware.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hardware {
    /// Model.
    pub model: HardwareModel,
    /// GPU, if any.
    pub gpu: Option<PciDevice>,
    /// Internal disks in controller order.
    pub disks: Vec<PhysicalDisk>,
}

impl Hardware {
    /// Intel NUC with an NVMe SSD, optionally with a GTX 1650.
    pub fn nuc(with_gtx1650: bool, serial: &str) -> Hardware {
        Hardware {
            model: HardwareModel::Nuc,
            gpu: with_gtx1650.then(|| PciDevice {
                vendor_id: NVIDIA_VENDOR_ID,
                device_id: 0x1f82,
                product: "TU117 [GeForce GTX 1650]".into(),
            }),
            disks: vec![PhysicalDisk {
                size: 500_107_862_016,
                model: "Samsung SSD 970 EVO Plus 500GB".into(),
                serial: serial.into(),
                wwid: format!("eui.0025385{serial}"),
                transport: "nvme".into(),
                bus_path: "/pci0000:00/0000:00:1d.0/0000:6d:00.0/nvme".into(),
                rotational: false,
                readonly: false,
                cdrom: false,
                nvme: true,
            }],
        }
    }

    /// Mac Mini with its Apple SSD on SATA.
    pub fn mac_mini(serial: &str) -> Hardware {
        Hardware {
            model: HardwareModel::MacMini,
            gpu: None,
            disks: vec![PhysicalDisk {
                size: 251_000_193_024,
                model: "APPLE SSD SM0256G".into(),
                serial: serial.into(),
                wwid: format!("naa.5002538{serial}"),
                transport: "sata".into(),
                bus_path: "/pci0000:00/0000:00:1f.2/ata1/host0/target0:0:0/0:0:0:0".into(),
                rotational: false,
                readonly: false,
                cdrom: false,
                nvme: false,
            }],
        }
    }

    /// True if an NVIDIA GPU sits on the PCI bus.
    pub fn has_nvidia_gpu(&self) -> bool {
        self.gpu
            .as_ref()
            .is_some_and(|g| g.vendor_id == NVIDIA_VENDOR_ID)
    }
}

/// The USB stick (a two-slot card reader carrying the Talos ISO) that shifts SCSI names: it
/// enumerates before the SATA controller, taking `sda` and `sdb`.
pub fn usb_stick_luns() -> Vec<PhysicalDisk> {
    (0..2)
        .map(|lun| PhysicalDisk {
            size: if lun == 0 { 31_914_983_424 } else { 0 },
            model: "Multi-Card".into(),
            serial: format!("20120501030900000-0:{lun}"),
            wwid: String::new(),
            transport: "usb".into(),
            bus_path: format!(
                "/pci0000:00/0000:00:14.0/usb2/2-1/2-1:1.0/host6/target6:0:0/6:0:0:{lun}"
            ),
            rotational: false,
            readonly: false,
            cdrom: false,
            nvme: false,
        })
        .collect()
}
