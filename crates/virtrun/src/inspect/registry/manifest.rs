//! Manifests as the OCI distribution API serves them: an image index (or
//! Docker manifest list) names one manifest per platform; a manifest names
//! the image's configuration and its layers.

use crate::inspect::elf::Arch;
use serde_json::Value;

/// What the client accepts when it asks for a manifest: a registry answers
/// 404 to a request that does not list the type it holds.
pub const ACCEPT: &str = "application/vnd.oci.image.index.v1+json, \
    application/vnd.oci.image.manifest.v1+json, \
    application/vnd.docker.distribution.manifest.list.v2+json, \
    application/vnd.docker.distribution.manifest.v2+json";

/// A blob a manifest names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Descriptor {
    /// Its media type.
    pub media_type: String,
    /// `sha256:…`.
    pub digest: String,
    /// Its size in bytes.
    pub size: u64,
}

/// A manifest, by kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Manifest {
    /// An index: the manifests by platform (`os`, `architecture`,
    /// `variant`).
    Index(Vec<(Descriptor, String, String)>),
    /// An image: its configuration and layers, in order.
    Image {
        /// The configuration blob (it names the architecture).
        config: Descriptor,
        /// The layers, lowest first.
        layers: Vec<Descriptor>,
    },
}

/// Parses a manifest of any of the [`ACCEPT`]ed types.
pub fn parse(bytes: &[u8]) -> Result<Manifest, String> {
    let v: Value = serde_json::from_slice(bytes).map_err(|e| format!("not a manifest: {e}"))?;
    if let Some(list) = v.get("manifests").and_then(Value::as_array) {
        let entries = list
            .iter()
            .filter_map(|m| {
                let platform = m.get("platform");
                let field = |k: &str| {
                    platform
                        .and_then(|p| p.get(k))
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_string()
                };
                Some((descriptor(m)?, field("os"), field("architecture")))
            })
            .collect();
        return Ok(Manifest::Index(entries));
    }
    let config = v
        .get("config")
        .and_then(descriptor)
        .ok_or("a manifest without a configuration")?;
    let layers = v
        .get("layers")
        .and_then(Value::as_array)
        .ok_or("a manifest without layers")?
        .iter()
        .map(|l| descriptor(l).ok_or_else(|| "a layer without a digest".to_string()))
        .collect::<Result<_, _>>()?;
    Ok(Manifest::Image { config, layers })
}

fn descriptor(v: &Value) -> Option<Descriptor> {
    Some(Descriptor {
        media_type: v
            .get("mediaType")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string(),
        digest: v.get("digest")?.as_str()?.to_string(),
        size: v.get("size").and_then(Value::as_u64).unwrap_or(0),
    })
}

/// The architecture as OCI platforms name it.
pub fn platform_arch(arch: Arch) -> &'static str {
    match arch {
        Arch::Amd64 => "amd64",
        Arch::Arm64 => "arm64",
        Arch::Riscv64 => "riscv64",
    }
}

/// The manifest of an index for `arch` on Linux.
pub fn pick(entries: &[(Descriptor, String, String)], arch: Arch) -> Option<&Descriptor> {
    entries
        .iter()
        .find(|(_, os, a)| (os == "linux" || os.is_empty()) && a == platform_arch(arch))
        .map(|(d, _, _)| d)
}

/// The architecture an image's configuration names.
pub fn config_arch(bytes: &[u8]) -> Option<String> {
    let v: Value = serde_json::from_slice(bytes).ok()?;
    Some(v.get("architecture")?.as_str()?.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_index_picks_the_platform() {
        let index = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json",
            "manifests":[
              {"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:aa","size":1,
               "platform":{"os":"linux","architecture":"arm64"}},
              {"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:bb","size":2,
               "platform":{"os":"linux","architecture":"amd64"}}]}"#;
        let Ok(Manifest::Index(entries)) = parse(index) else {
            panic!("an index");
        };
        assert_eq!(pick(&entries, Arch::Amd64).unwrap().digest, "sha256:bb");
        assert_eq!(pick(&entries, Arch::Arm64).unwrap().digest, "sha256:aa");
        assert_eq!(pick(&entries, Arch::Riscv64), None);
    }

    #[test]
    fn a_manifest_names_its_config_and_layers() {
        let manifest = br#"{"schemaVersion":2,
            "config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:cc","size":3},
            "layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"sha256:dd","size":4}]}"#;
        assert_eq!(
            parse(manifest),
            Ok(Manifest::Image {
                config: Descriptor {
                    media_type: "application/vnd.oci.image.config.v1+json".into(),
                    digest: "sha256:cc".into(),
                    size: 3
                },
                layers: vec![Descriptor {
                    media_type: "application/vnd.oci.image.layer.v1.tar+gzip".into(),
                    digest: "sha256:dd".into(),
                    size: 4
                }],
            })
        );
        assert_eq!(
            config_arch(br#"{"architecture":"arm64","os":"linux"}"#).as_deref(),
            Some("arm64")
        );
        assert!(parse(b"{}").is_err());
        assert!(parse(b"not json").is_err());
    }
}
