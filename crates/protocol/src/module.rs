//! Kernel modules' names and files, as host and guest both read them.

/// The file name suffixes of kernel modules: plain, then compressed.
pub const MODULE_SUFFIXES: [&str; 4] = [".ko", ".ko.xz", ".ko.zst", ".ko.gz"];

/// A module name as the kernel spells it: with `_` where a file name or a
/// request may have `-`.
pub fn normalize_module_name(name: &str) -> String {
    name.replace('-', "_")
}

/// The module a file holds (a path or a file name): its base name without
/// a module suffix, normalised; `None` for a file that is no module.
pub fn module_name(file: &str) -> Option<String> {
    let base = file.rsplit('/').next()?;
    let stem = MODULE_SUFFIXES
        .iter()
        .find_map(|suffix| base.strip_suffix(suffix))?;
    Some(normalize_module_name(stem))
}

/// Whether a module file is compressed (the kernel must be told, or the
/// host must decompress it).
pub fn is_compressed_module(file: &str) -> bool {
    MODULE_SUFFIXES[1..].iter().any(|s| file.ends_with(s))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_of_module_files() {
        assert_eq!(
            module_name("virtio_mmio.ko.xz").as_deref(),
            Some("virtio_mmio")
        );
        assert_eq!(
            module_name("kernel/drivers/net/nf-nat.ko").as_deref(),
            Some("nf_nat")
        );
        assert_eq!(module_name("/lib/modules/x/a.ko.zst").as_deref(), Some("a"));
        assert_eq!(module_name("modules.dep"), None);
        assert_eq!(module_name("a.ko.bz2"), None);
        assert!(is_compressed_module("a.ko.gz"));
        assert!(!is_compressed_module("a.ko"));
        assert_eq!(normalize_module_name("nf-nat"), "nf_nat");
    }
}
