//! The kernel image's header: its architecture and release, from the boot
//! header, the file name or the version banner.

use super::*;
use crate::inspect::elf::Arch;
use std::fs::File;
use std::io::{self, Read};
use std::path::Path;

/// The architecture a kernel image was built for, from its header: x86 boot
/// protocol (bzImage), arm64/riscv64 `Image` magic, EFI/PE machine or ELF
/// machine. `Ok(None)` for a compressed image whose header is not readable
/// without unpacking it (e.g. `Image.gz`).
pub fn image_arch(head: &[u8], path: &Path) -> Result<Option<Arch>, KernelError> {
    let at = |range: std::ops::Range<usize>| head.get(range);
    if at(0x202..0x206) == Some(b"HdrS") {
        return Ok(Some(Arch::Amd64));
    }
    match at(0x38..0x3c) {
        Some(b"ARM\x64") => return Ok(Some(Arch::Arm64)),
        Some(b"RSC\x05") => return Ok(Some(Arch::Riscv64)),
        _ => {}
    }
    if head.starts_with(b"\x7fELF") {
        let machine = u16::from_le_bytes([
            head.get(18).copied().unwrap_or(0),
            head.get(19).copied().unwrap_or(0),
        ]);
        return Arch::from_machine(machine)
            .map(Some)
            .ok_or_else(|| KernelError::NotAKernel(path.to_path_buf()));
    }
    if head.starts_with(b"MZ") {
        let pe =
            at(0x3c..0x40).map_or(0, |b| u32::from_le_bytes([b[0], b[1], b[2], b[3]])) as usize;
        if at(pe..pe + 4) == Some(b"PE\0\0") {
            let machine = at(pe + 4..pe + 6).map_or(0, |b| u16::from_le_bytes([b[0], b[1]]));
            return match machine {
                0x8664 => Ok(Some(Arch::Amd64)),
                0xaa64 => Ok(Some(Arch::Arm64)),
                0x5064 => Ok(Some(Arch::Riscv64)),
                _ => Err(KernelError::NotAKernel(path.to_path_buf())),
            };
        }
    }
    // gzip, zstd, xz, lz4: a compressed Image, whose header is inside.
    const COMPRESSED: [&[u8]; 4] = [
        b"\x1f\x8b",
        b"\x28\xb5\x2f\xfd",
        b"\xfd7zXZ",
        b"\x02\x21\x4c\x18",
    ];
    if COMPRESSED.iter().any(|m| head.starts_with(m)) {
        return Ok(None);
    }
    Err(KernelError::NotAKernel(path.to_path_buf()))
}

/// Reads the architecture and the release of a kernel image: the release
/// from the x86 boot header's `kernel_version` field, else from the
/// `Linux version` banner of an uncompressed image.
pub fn read_image(image: &Path) -> Result<(Option<Arch>, Option<String>), KernelError> {
    let mut file = File::open(image).map_err(io_err(image))?;
    let mut head = vec![0u8; 0x10000];
    let n = read_up_to(&mut file, &mut head).map_err(io_err(image))?;
    head.truncate(n);
    let arch = image_arch(&head, image)?;
    if let Some(release) = bzimage_release(&head) {
        return Ok((arch, Some(release)));
    }
    if let Some(release) = release_from_name(image).or_else(|| recorded_release(image)) {
        return Ok((arch, Some(release)));
    }
    // SAFETY: the file is only read through the map; a concurrent writer
    // could only make us read garbage, which the parsing below tolerates.
    let map = unsafe { memmap2::Mmap::map(&file) }.map_err(io_err(image))?;
    Ok((arch, banner_release(&map)))
}

/// The release a pull recorded beside the image (`boot/../`), so that no
/// run has to scan the image for its banner.
fn recorded_release(image: &Path) -> Option<String> {
    let root = image.parent()?.parent()?;
    let release =
        std::fs::read_to_string(root.join(crate::inspect::registry::RELEASE_FILE)).ok()?;
    let release = release.trim();
    (!release.is_empty()).then(|| release.to_string())
}

pub(super) fn read_up_to(file: &mut File, buf: &mut [u8]) -> io::Result<usize> {
    let mut total = 0;
    while total < buf.len() {
        match file.read(&mut buf[total..])? {
            0 => break,
            n => total += n,
        }
    }
    Ok(total)
}

/// The release from a distribution's file name (`vmlinuz-<release>`,
/// `vmlinux-<release>`, `Image-<release>`), trusted only when its
/// `config-<release>` lies beside it: cheaper than scanning tens of
/// megabytes of an uncompressed image for its banner.
pub(super) fn release_from_name(image: &Path) -> Option<String> {
    let real = std::fs::canonicalize(image).ok()?;
    let name = real.file_name()?.to_str()?;
    let release = ["vmlinuz-", "vmlinux-", "Image-"]
        .iter()
        .find_map(|p| name.strip_prefix(p))?;
    real.with_file_name(format!("config-{release}"))
        .is_file()
        .then(|| release.to_string())
}

/// The release from an x86 bzImage header (boot protocol ≥ 2.00).
pub(super) fn bzimage_release(head: &[u8]) -> Option<String> {
    if head.get(0x202..0x206)? != b"HdrS" {
        return None;
    }
    let offset = u16::from_le_bytes([*head.get(0x20e)?, *head.get(0x20f)?]) as usize;
    if offset == 0 {
        return None;
    }
    let text = head.get(offset + 0x200..)?;
    let end = text.iter().position(|&b| b == 0 || b == b' ')?;
    std::str::from_utf8(&text[..end]).ok().map(str::to_string)
}

/// The release from a `Linux version <release> ...` banner.
pub(super) fn banner_release(image: &[u8]) -> Option<String> {
    const BANNER: &[u8] = b"Linux version ";
    memchr::memmem::find_iter(image, BANNER).find_map(|pos| {
        let rest = &image[pos + BANNER.len()..];
        let end = rest.iter().take(256).position(|&b| b == b' ')?;
        let release = std::str::from_utf8(&rest[..end]).ok()?;
        // Skip format strings such as "Linux version %s".
        (release.chars().next()?.is_ascii_digit()).then(|| release.to_string())
    })
}
