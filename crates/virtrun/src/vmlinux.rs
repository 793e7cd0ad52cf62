//! A faster boot for x86 kernels: the ELF `vmlinux` inside a bzImage,
//! booted through QEMU's PVH entry.
//!
//! A bzImage decompresses itself at every boot, which under emulation costs
//! about a second. A kernel built with `CONFIG_PVH` can instead be loaded as
//! an ELF image that QEMU enters directly. The vmlinux is extracted once and
//! cached, keyed by the bzImage's identity (device, inode, size, mtime), so
//! only the first run pays for the decompression.

use std::io::{self, Read, Write};
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
    // Write under a private name and rename: runs in parallel never see a
    // partial file.
    let mut tmp = tempfile::NamedTempFile::new_in(cache)?;
    tmp.write_all(&vmlinux)?;
    tmp.persist(&cached).map_err(|e| e.error)?;
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
    let elf = decompress(payload)?;
    has_pvh_note(&elf).then_some(elf)
}

fn decompress(payload: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    if payload.starts_with(&[0x02, 0x21, 0x4c, 0x18]) {
        return lz4_legacy(payload);
    }
    if payload.starts_with(&[0x1f, 0x8b]) {
        flate2::read::GzDecoder::new(payload)
            .read_to_end(&mut out)
            .ok()?;
        return Some(out);
    }
    if payload.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        ruzstd::decoding::StreamingDecoder::new(payload)
            .ok()?
            .read_to_end(&mut out)
            .ok()?;
        return Some(out);
    }
    if payload.starts_with(b"\xfd7zXZ") {
        lzma_rs::xz_decompress(&mut &payload[..], &mut out).ok()?;
        return Some(out);
    }
    None
}

/// The LZ4 "legacy" format the kernel build uses (`lz4 -l`): a magic, then
/// blocks of a little-endian `u32` compressed length and the block, each
/// decompressing to at most 8 MiB. The kernel build appends the
/// uncompressed size, which is not a block.
fn lz4_legacy(data: &[u8]) -> Option<Vec<u8>> {
    const MAGIC: [u8; 4] = [0x02, 0x21, 0x4c, 0x18];
    const BLOCK: usize = 8 << 20;
    let mut out = Vec::new();
    let mut rest = data;
    while rest.len() >= 4 {
        if rest[..4] == MAGIC {
            rest = &rest[4..];
            continue;
        }
        let len = u32::from_le_bytes(rest[..4].try_into().ok()?) as usize;
        let Some(block) = rest.get(4..4 + len) else {
            break; // the size trailer
        };
        let start = out.len();
        out.resize(start + BLOCK, 0);
        let n = lz4_flex::block::decompress_into(block, &mut out[start..]).ok()?;
        out.truncate(start + n);
        rest = &rest[4 + len..];
    }
    (!out.is_empty()).then_some(out)
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
    fn lz4_legacy_blocks() {
        let a = vec![7u8; 1000];
        let b: Vec<u8> = (0..5000).map(|i| (i % 13) as u8).collect();
        let mut stream = vec![0x02, 0x21, 0x4c, 0x18];
        for part in [&a, &b] {
            let c = lz4_flex::block::compress(part);
            stream.extend_from_slice(&(c.len() as u32).to_le_bytes());
            stream.extend_from_slice(&c);
        }
        stream.extend_from_slice(&6000u32.to_le_bytes()); // the size trailer
        let mut want = a.clone();
        want.extend_from_slice(&b);
        assert_eq!(lz4_legacy(&stream), Some(want));
    }

    #[test]
    fn not_a_bzimage() {
        assert_eq!(extract(b"hello"), None);
        assert_eq!(extract(&std::fs::read("/usr/bin/true").unwrap()), None);
    }

    #[test]
    fn debian_bzimage_has_a_pvh_vmlinux() {
        let kernel = std::env::var_os("VIRTRUN_TEST_KERNEL")
            .map(PathBuf::from)
            .or_else(|| {
                std::env::var_os("HOME")
                    .map(|h| PathBuf::from(h).join(".cache/virtrun/kernels/amd64/vmlinuz"))
            })
            .unwrap();
        let image = std::fs::read(&kernel)
            .unwrap_or_else(|e| panic!("{}: {e}: run scripts/setup", kernel.display()));
        let elf = extract(&image).expect("a PVH vmlinux inside the Debian bzImage");
        assert!(elf.starts_with(b"\x7fELF"));
        assert!(elf.len() > image.len());
    }
}
