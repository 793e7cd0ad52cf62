//! A faster boot for x86 kernels: the ELF `vmlinux` inside a bzImage,
//! booted through QEMU's PVH entry.
//!
//! A bzImage decompresses itself at every boot, which under emulation costs
//! about a second. A kernel built with `CONFIG_PVH` can instead be loaded as
//! an ELF image that QEMU enters directly. The vmlinux is extracted once and
//! cached, keyed by the bzImage's identity (device, inode, size, mtime), so
//! only the first run pays for the decompression.

use std::io::{self, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// ELF note type of the PVH entry point (`XEN_ELFNOTE_PHYS32_ENTRY`).
const PVH_NOTE: u32 = 18;

/// The cached PVH-bootable vmlinux for `bzimage`, extracted now if needed.
/// `Ok(None)` when the image is not a bzImage, its payload uses an unknown
/// compression, or the kernel has no PVH entry: then boot the image as it is.
pub fn pvh_image(bzimage: &Path, cache: &Path) -> io::Result<Option<PathBuf>> {
    let meta = std::fs::metadata(bzimage)?;
    let key = format!(
        "vmlinux-{:x}-{:x}-{:x}-{:x}.{:x}",
        meta.dev(),
        meta.ino(),
        meta.size(),
        meta.mtime(),
        meta.mtime_nsec()
    );
    let cached = cache.join(&key);
    let not_pvh = cache.join(format!("{key}.not-pvh"));
    if cached.is_file() {
        crate::cache::touch(&cached);
        return Ok(Some(cached));
    }
    if not_pvh.exists() {
        return Ok(None);
    }
    let image = std::fs::read(bzimage)?;
    let Some(vmlinux) = extract(&image) else {
        std::fs::write(&not_pvh, b"")?;
        return Ok(None);
    };
    // Written without a name and linked when complete: runs in parallel never
    // see a partial file, and a run killed meanwhile leaves nothing.
    match crate::scratch::tmpfile_in(cache) {
        Ok(mut tmp) => {
            tmp.write_all(&vmlinux)?;
            crate::scratch::link(&tmp, &cached)?;
        }
        Err(e) if crate::scratch::unsupported(&e) => {
            let mut tmp = tempfile::NamedTempFile::new_in(cache)?;
            tmp.write_all(&vmlinux)?;
            tmp.persist(&cached).map_err(|e| e.error)?;
        }
        Err(e) => return Err(e),
    }
    Ok(Some(cached))
}

/// The vmlinux ELF inside a bzImage, if it has a PVH entry.
pub fn extract(image: &[u8]) -> Option<Vec<u8>> {
    if image.get(0x202..0x206)? != b"HdrS" {
        return None;
    }
    let u32_at = |off: usize| -> Option<u32> {
        Some(u32::from_le_bytes(
            image.get(off..off + 4)?.try_into().ok()?,
        ))
    };
    let setup_sects = match *image.get(0x1f1)? {
        0 => 4,
        n => n as usize,
    };
    let offset = (setup_sects + 1) * 512 + u32_at(0x248)? as usize;
    let payload = image.get(offset..offset + u32_at(0x24c)? as usize)?;
    let elf = crate::inspect::decompress::decompress(payload).ok()?;
    has_pvh_note(&elf).then_some(elf)
}

/// Whether an ELF file has the PVH entry note.
fn has_pvh_note(elf: &[u8]) -> bool {
    let Ok(parsed) = goblin::elf::Elf::parse(elf) else {
        return false;
    };
    parsed
        .iter_note_headers(elf)
        .into_iter()
        .flatten()
        .flatten()
        .any(|note| note.n_type == PVH_NOTE && note.name == "Xen")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_a_bzimage() {
        assert_eq!(extract(b"hello"), None);
        assert_eq!(extract(&std::fs::read("/usr/bin/true").unwrap()), None);
    }

    #[test]
    fn debian_bzimage_has_a_pvh_vmlinux() {
        let image = std::fs::read(crate::inspect::kernel::tests::debian_kernel("amd64")).unwrap();
        let elf = extract(&image).expect("a PVH vmlinux inside the Debian bzImage");
        assert!(elf.starts_with(b"\x7fELF"));
        assert!(elf.len() > image.len());
    }
}
