//! Decompression of what virtrun reads: gzip, xz and zstd kernel modules, the
//! LZ4/gzip/xz/zstd payload of a bzImage, and the built-in inits (LZ4, the
//! fastest to inflate: they are unpacked at every run). The format is told
//! by the data's magic number. Pure-Rust decoders, so that building virtrun
//! needs no C library.

use std::io::Read;

const LZ4_LEGACY: [u8; 4] = [0x02, 0x21, 0x4c, 0x18];
const GZIP: [u8; 2] = [0x1f, 0x8b];
const ZSTD: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];
const XZ: &[u8] = b"\xfd7zXZ";

/// Whether `data` starts like a format [`decompress`] reads.
pub fn is_compressed(data: &[u8]) -> bool {
    data.starts_with(&LZ4_LEGACY)
        || data.starts_with(&GZIP)
        || data.starts_with(&ZSTD)
        || data.starts_with(XZ)
}

/// Decompresses `data` by its magic number; an error names what went wrong.
pub fn decompress(data: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    if data.starts_with(&LZ4_LEGACY) {
        return lz4_legacy(data).ok_or_else(|| "corrupt LZ4 data".to_string());
    }
    if data.starts_with(&GZIP) {
        flate2::read::GzDecoder::new(data)
            .read_to_end(&mut out)
            .map_err(|e| e.to_string())?;
        return Ok(out);
    }
    if data.starts_with(&ZSTD) {
        ruzstd::decoding::StreamingDecoder::new(data)
            .map_err(|e| e.to_string())?
            .read_to_end(&mut out)
            .map_err(|e| e.to_string())?;
        return Ok(out);
    }
    if data.starts_with(XZ) {
        lzma_rs::xz_decompress(&mut &data[..], &mut out).map_err(|e| e.to_string())?;
        return Ok(out);
    }
    Err("unknown compression".into())
}

/// The LZ4 "legacy" format (`lz4 -l`, as the kernel build uses it): a magic,
/// then blocks of a little-endian `u32` compressed length and the block, each
/// decompressing to at most 8 MiB; the magic may repeat (concatenated
/// streams). Whatever does not form a whole block (the kernel build appends
/// the uncompressed size) ends the data.
fn lz4_legacy(data: &[u8]) -> Option<Vec<u8>> {
    const BLOCK: usize = 8 << 20;
    let mut out = Vec::new();
    let mut rest = data;
    while rest.len() >= 4 {
        if rest[..4] == LZ4_LEGACY {
            rest = &rest[4..];
            continue;
        }
        let len = u32::from_le_bytes(rest[..4].try_into().ok()?) as usize;
        let Some(block) = rest.get(4..4 + len) else {
            break;
        };
        // A block inflates to at most 8 MiB, usually to a few times its
        // size: start small, as zeroing and touching 8 MiB would cost more
        // than inflating.
        let start = out.len();
        let mut room = (len * 4).clamp(64 << 10, BLOCK);
        let n = loop {
            out.resize(start + room, 0);
            match lz4_flex::block::decompress_into(block, &mut out[start..]) {
                Ok(n) => break n,
                Err(lz4_flex::block::DecompressError::OutputTooSmall { .. }) if room < BLOCK => {
                    room = (room * 2).min(BLOCK);
                }
                Err(_) => return None,
            }
        };
        out.truncate(start + n);
        rest = &rest[4 + len..];
    }
    (!out.is_empty()).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lz4_legacy_blocks() {
        let a = vec![7u8; 1000];
        let b: Vec<u8> = (0..5000).map(|i| (i % 13) as u8).collect();
        let mut stream = LZ4_LEGACY.to_vec();
        for part in [&a, &b] {
            let c = lz4_flex::block::compress(part);
            stream.extend_from_slice(&(c.len() as u32).to_le_bytes());
            stream.extend_from_slice(&c);
        }
        stream.extend_from_slice(&6000u32.to_le_bytes()); // the size trailer
        let mut want = a.clone();
        want.extend_from_slice(&b);
        assert_eq!(decompress(&stream), Ok(want));
    }

    #[test]
    fn every_format_round_trips() {
        let data: Vec<u8> = (0..100_000u32)
            .flat_map(|i| (i % 251).to_le_bytes())
            .collect();
        let mut xz = Vec::new();
        lzma_rs::xz_compress(&mut &data[..], &mut xz).unwrap();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut gz, &data).unwrap();
        let gz = gz.finish().unwrap();
        let zst = ruzstd::encoding::compress_to_vec(
            &data[..],
            ruzstd::encoding::CompressionLevel::Fastest,
        );
        for packed in [xz, gz, zst] {
            assert!(is_compressed(&packed));
            assert_eq!(decompress(&packed).unwrap(), data);
        }
        assert!(!is_compressed(b"\x7fELF"));
        assert!(decompress(b"\x7fELF").is_err());
        assert!(decompress(&GZIP).is_err());
    }
}
