//! An image's layers applied in order into a directory, the way a container
//! runtime applies them, but only what a kernel needs of them (`boot/` and
//! the module trees) and safely: no path leaves the directory, links stay
//! inside it (an absolute link target counts from the directory, as inside
//! the image), no device nodes, no special bits. Whiteouts (`.wh.NAME`,
//! `.wh..wh..opq`) remove what lower layers brought.

use std::collections::HashSet;
use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::{Component, Path, PathBuf};

/// The parts of an image a kernel needs.
const KEPT: [&str; 3] = ["boot", "lib/modules", "usr/lib/modules"];

/// How a layer is compressed, by its media type, else by its first bytes.
fn decompressed<'a>(media_type: &str, file: File) -> io::Result<Box<dyn Read + 'a>> {
    let mut reader = BufReader::new(file);
    let head = {
        use std::io::BufRead;
        reader
            .fill_buf()?
            .get(..4)
            .map(<[u8]>::to_vec)
            .unwrap_or_default()
    };
    let gzip = media_type.ends_with("gzip") || head.starts_with(&[0x1f, 0x8b]);
    let zstd = media_type.ends_with("zstd") || head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]);
    Ok(if gzip {
        Box::new(flate2::read::MultiGzDecoder::new(reader))
    } else if zstd {
        Box::new(
            ruzstd::decoding::StreamingDecoder::new(reader)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?,
        )
    } else {
        Box::new(reader)
    })
}

/// A path of the archive made relative and plain: `None` for one that would
/// leave the root.
fn clean(path: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::Normal(p) => out.push(p),
            Component::CurDir | Component::RootDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    return None;
                }
            }
            Component::Prefix(_) => return None,
        }
    }
    (!out.as_os_str().is_empty()).then_some(out)
}

fn kept(path: &Path) -> bool {
    KEPT.iter()
        .any(|k| path.starts_with(k) || Path::new(k).starts_with(path))
}

/// A link target as it resolves inside the root, relative to the link's
/// directory; `None` when it would leave the root.
fn confined_target(link: &Path, target: &Path) -> Option<PathBuf> {
    let dir = link.parent().unwrap_or(Path::new(""));
    let absolute = if target.is_absolute() {
        // As inside the image, `..` at its root stays there.
        let mut out = PathBuf::new();
        for c in target.components() {
            match c {
                Component::Normal(p) => out.push(p),
                Component::ParentDir => {
                    out.pop();
                }
                _ => {}
            }
        }
        out
    } else {
        clean(&dir.join(target))?
    };
    // From the link's directory back to the root, then down to the target.
    let up = dir.components().count();
    let mut rel = PathBuf::new();
    for _ in 0..up {
        rel.push("..");
    }
    rel.push(absolute);
    Some(rel)
}

/// Applies the layer in `file` (of `media_type`) onto `root`.
pub fn apply(root: &Path, media_type: &str, file: File) -> io::Result<()> {
    let mut archive = tar::Archive::new(decompressed(media_type, file)?);
    let mut made: HashSet<PathBuf> = HashSet::new();
    for entry in archive.entries()? {
        let mut entry = entry?;
        let Some(path) = clean(&entry.path()?) else {
            continue;
        };
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
        let parent = path.parent().unwrap_or(Path::new("")).to_path_buf();
        if name.as_deref() == Some(".wh..wh..opq") {
            opaque(root, &parent, &made)?;
            continue;
        }
        if let Some(hidden) = name.as_deref().and_then(|n| n.strip_prefix(".wh.")) {
            remove(&root.join(&parent).join(hidden))?;
            continue;
        }
        if !kept(&path) {
            continue;
        }
        let target = root.join(&path);
        if let Some(dir) = target.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let mode = entry.header().mode().unwrap_or(0o644) & 0o777;
        match entry.header().entry_type() {
            tar::EntryType::Directory => {
                if !target.is_dir() {
                    remove(&target)?;
                    std::fs::create_dir_all(&target)?;
                }
                set_mode(&target, mode | 0o700)?;
            }
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                remove(&target)?;
                let mut out = File::create(&target)?;
                io::copy(&mut entry, &mut out)?;
                set_mode(&target, mode)?;
            }
            tar::EntryType::Symlink => {
                let Some(link) = entry.link_name()? else {
                    continue;
                };
                let Some(rel) = confined_target(&path, &link) else {
                    continue;
                };
                remove(&target)?;
                std::os::unix::fs::symlink(rel, &target)?;
            }
            tar::EntryType::Link => {
                let Some(link) = entry.link_name()? else {
                    continue;
                };
                let Some(source) = clean(&link).filter(|s| kept(s)) else {
                    continue;
                };
                let source = root.join(source);
                // Only to a plain file this root has, never through a link.
                if std::fs::symlink_metadata(&source).is_ok_and(|m| m.is_file()) {
                    remove(&target)?;
                    std::fs::hard_link(&source, &target)?;
                }
            }
            // Device nodes, FIFOs and the rest: never.
            _ => continue,
        }
        made.insert(path);
    }
    Ok(())
}

/// An opaque directory: what lower layers put in `dir` is gone; what this
/// layer made there stays.
fn opaque(root: &Path, dir: &Path, made: &HashSet<PathBuf>) -> io::Result<()> {
    let Ok(entries) = std::fs::read_dir(root.join(dir)) else {
        return Ok(());
    };
    for entry in entries.flatten() {
        if !made.contains(&dir.join(entry.file_name())) {
            remove(&entry.path())?;
        }
    }
    Ok(())
}

/// Removes `path`, whatever it is, if it exists (a link, not what it
/// points to).
fn remove(path: &Path) -> io::Result<()> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => std::fs::remove_dir_all(path),
        Ok(_) => std::fs::remove_file(path),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

fn set_mode(path: &Path, mode: u32) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tar layer of `entries`: (path, kind, data or link target).
    fn layer(entries: &[(&str, char, &str)]) -> tempfile::NamedTempFile {
        let file = tempfile::NamedTempFile::new().unwrap();
        let mut b = tar::Builder::new(file.reopen().unwrap());
        for (path, kind, data) in entries {
            let mut h = tar::Header::new_gnu();
            h.set_mode(0o4755);
            if path.contains("..") {
                // What a hostile image has, which the builder refuses to write.
                h.set_entry_type(tar::EntryType::Regular);
                h.set_size(data.len() as u64);
                h.as_old_mut().name[..path.len()].copy_from_slice(path.as_bytes());
                h.set_cksum();
                b.append(&h, data.as_bytes()).unwrap();
                continue;
            }
            match kind {
                'd' => {
                    h.set_entry_type(tar::EntryType::Directory);
                    h.set_size(0);
                    b.append_data(&mut h, path, io::empty()).unwrap();
                }
                'f' => {
                    h.set_entry_type(tar::EntryType::Regular);
                    h.set_size(data.len() as u64);
                    b.append_data(&mut h, path, data.as_bytes()).unwrap();
                }
                'l' | 'h' | 'c' => {
                    h.set_entry_type(match kind {
                        'l' => tar::EntryType::Symlink,
                        'h' => tar::EntryType::Link,
                        _ => tar::EntryType::Char,
                    });
                    h.set_size(0);
                    b.append_link(&mut h, path, data).unwrap();
                }
                _ => unreachable!(),
            }
        }
        b.finish().unwrap();
        file
    }

    fn apply_all(root: &Path, layers: &[&tempfile::NamedTempFile]) {
        for l in layers {
            apply(
                root,
                "application/vnd.oci.image.layer.v1.tar",
                l.reopen().unwrap(),
            )
            .unwrap();
        }
    }

    #[test]
    fn layers_in_order_with_whiteouts_only_the_kernels_parts() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        let lower = layer(&[
            ("boot/", 'd', ""),
            ("boot/vmlinuz-old", 'f', "old"),
            ("lib/modules/6.1/old.ko", 'f', "old module"),
            ("lib/modules/6.1/kept.ko", 'f', "kept"),
            ("etc/passwd", 'f', "root:x:0:0"),
        ]);
        let upper = layer(&[
            ("boot/.wh.vmlinuz-old", 'f', ""),
            ("boot/vmlinuz-6.6", 'f', "new"),
            ("boot/vmlinuz", 'l', "/boot/vmlinuz-6.6"),
            ("lib/modules/6.1/.wh.old.ko", 'f', ""),
            ("./lib/modules/6.6/", 'd', ""),
            ("lib/modules/6.6/a.ko", 'f', "a"),
            ("lib/modules/6.6/b.ko", 'h', "lib/modules/6.6/a.ko"),
        ]);
        apply_all(r, &[&lower, &upper]);
        assert_eq!(std::fs::read(r.join("boot/vmlinuz")).unwrap(), b"new");
        assert_eq!(
            std::fs::read_link(r.join("boot/vmlinuz")).unwrap(),
            Path::new("../boot/vmlinuz-6.6")
        );
        assert!(!r.join("boot/vmlinuz-old").exists());
        assert!(!r.join("lib/modules/6.1/old.ko").exists());
        assert_eq!(
            std::fs::read(r.join("lib/modules/6.1/kept.ko")).unwrap(),
            b"kept"
        );
        assert_eq!(std::fs::read(r.join("lib/modules/6.6/b.ko")).unwrap(), b"a");
        // The rest of the image is not used, nor special bits kept.
        assert!(!r.join("etc").exists());
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(r.join("boot/vmlinuz-6.6"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o7777, 0o755);
        // An opaque directory hides the lower layers' entries.
        let opaque = layer(&[
            ("lib/modules/6.1/.wh..wh..opq", 'f', ""),
            ("lib/modules/6.1/new.ko", 'f', "n"),
        ]);
        apply_all(r, &[&opaque]);
        assert!(!r.join("lib/modules/6.1/kept.ko").exists());
        assert!(r.join("lib/modules/6.1/new.ko").exists());
    }

    #[test]
    fn gzip_and_zstd_layers() {
        let plain = layer(&[("boot/vmlinuz", 'f', "kernel")]);
        let tar = std::fs::read(plain.path()).unwrap();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        io::Write::write_all(&mut gz, &tar).unwrap();
        let zst = ruzstd::encoding::compress_to_vec(
            &tar[..],
            ruzstd::encoding::CompressionLevel::Fastest,
        );
        for (media, bytes) in [
            (
                "application/vnd.oci.image.layer.v1.tar+gzip",
                gz.finish().unwrap(),
            ),
            ("application/vnd.oci.image.layer.v1.tar+zstd", zst),
        ] {
            let file = tempfile::NamedTempFile::new().unwrap();
            std::fs::write(file.path(), &bytes).unwrap();
            let root = tempfile::tempdir().unwrap();
            apply(root.path(), media, file.reopen().unwrap()).unwrap();
            assert_eq!(
                std::fs::read(root.path().join("boot/vmlinuz")).unwrap(),
                b"kernel",
                "{media}"
            );
            // Told by their first bytes too.
            let root = tempfile::tempdir().unwrap();
            apply(
                root.path(),
                "application/octet-stream",
                file.reopen().unwrap(),
            )
            .unwrap();
            assert_eq!(
                std::fs::read(root.path().join("boot/vmlinuz")).unwrap(),
                b"kernel",
                "{media}"
            );
        }
    }

    #[test]
    fn nothing_leaves_the_root() {
        let outer = tempfile::tempdir().unwrap();
        let root = outer.path().join("root");
        std::fs::create_dir(&root).unwrap();
        let evil = layer(&[
            ("../escape", 'f', "x"),
            ("boot/../../escape2", 'f', "x"),
            ("boot/up", 'l', "../../.."),
            ("boot/abs", 'l', "/../../etc"),
            ("boot/tty", 'c', "x"),
            ("boot/hard", 'h', "/etc/passwd"),
        ]);
        apply_all(&root, &[&evil]);
        assert!(!outer.path().join("escape").exists());
        assert!(!outer.path().join("escape2").exists());
        assert!(std::fs::symlink_metadata(root.join("boot/up")).is_err());
        // An absolute target counts from the root: `/../../etc` is `/etc`
        // there.
        assert_eq!(
            std::fs::read_link(root.join("boot/abs")).unwrap(),
            Path::new("../etc")
        );
        assert!(!root.join("boot/tty").exists());
        assert!(!root.join("boot/hard").exists());
    }
}
