//! The kernel's build configuration (`config-<release>` beside the image).

use super::*;
use std::collections::HashMap;

/// The kernel's build configuration (`config-<release>` next to the image).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct KernelConfig {
    options: HashMap<String, String>,
}

impl KernelConfig {
    /// Parses a `.config`-style text.
    pub fn parse(text: &str) -> Self {
        let options = text
            .lines()
            .filter(|l| l.starts_with("CONFIG_"))
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        KernelConfig { options }
    }

    /// The value of an option: `y`, `m`, a string, or `None` when not set.
    pub fn get(&self, option: &str) -> Option<&str> {
        self.options.get(option).map(String::as_str)
    }
}

impl KernelConfig {
    /// Whether `finit_module` of this kernel takes files compressed like
    /// that (`CONFIG_MODULE_DECOMPRESS` and the matching algorithm).
    pub fn can_decompress(&self, c: Compression) -> bool {
        self.get("CONFIG_MODULE_DECOMPRESS") == Some("y")
            && self.get(c.kernel_option()) == Some("y")
    }
}
