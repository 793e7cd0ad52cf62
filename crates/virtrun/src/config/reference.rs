//! OCI image references as `-kernel` takes them: always with an explicit
//! registry host (`host[:port]/repository[:tag|@sha256:…]`), the first
//! component containing `.` or `:` or being `localhost`, so that a path
//! (relative or mistyped) is never taken for one.

use std::fmt;

/// A parsed image reference.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Reference {
    /// The registry: `host` or `host:port`.
    pub registry: String,
    /// The repository within it, e.g. `cilium/ci-kernels`.
    pub repository: String,
    /// The tag or digest asked for.
    pub version: Version,
}

/// What of a repository a reference names.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Version {
    /// A tag (`latest` when none was given), resolved by the registry.
    Tag(String),
    /// A manifest digest, `sha256:` and 64 hex digits.
    Digest(String),
}

impl Reference {
    /// Parses `text`; `None` for anything that is not a reference with an
    /// explicit registry host.
    pub fn parse(text: &str) -> Option<Reference> {
        let (registry, rest) = text.split_once('/')?;
        let host_like = registry.contains('.') || registry.contains(':') || registry == "localhost";
        if !host_like || registry.starts_with('.') || !valid_registry(registry) {
            return None;
        }
        let (name, version) = match rest.split_once('@') {
            Some((name, digest)) => (name, Version::Digest(valid_digest(digest)?.to_string())),
            None => match rest.rsplit_once(':') {
                // A colon after the last slash is a tag's.
                Some((name, tag)) if !tag.contains('/') => (name, Version::Tag(valid_tag(tag)?)),
                _ => (rest, Version::Tag("latest".to_string())),
            },
        };
        name.split('/').all(valid_component).then(|| Reference {
            registry: registry.to_string(),
            repository: name.to_string(),
            version,
        })
    }

    /// The host part of the registry, without its port.
    pub fn host(&self) -> &str {
        match self.registry.rsplit_once(':') {
            Some((host, port)) if port.bytes().all(|b| b.is_ascii_digit()) => host,
            _ => &self.registry,
        }
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        match &self.version {
            Version::Tag(tag) => write!(f, ":{tag}"),
            Version::Digest(digest) => write!(f, "@{digest}"),
        }
    }
}

fn valid_registry(registry: &str) -> bool {
    let (host, port) = match registry.rsplit_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (registry, None),
    };
    let host_ok = !host.is_empty()
        && host
            .split('.')
            .all(|l| !l.is_empty() && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'));
    let port_ok =
        port.is_none_or(|p| !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()));
    host_ok && port_ok
}

/// A path component: lowercase letters and digits, separated by `.`, `_`,
/// `__` or runs of `-`.
fn valid_component(c: &str) -> bool {
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let bytes = c.as_bytes();
    !bytes.is_empty()
        && alnum(bytes[0])
        && alnum(bytes[bytes.len() - 1])
        && bytes
            .iter()
            .all(|&b| alnum(b) || b == b'.' || b == b'_' || b == b'-')
        && !c.contains("..")
        && !c.contains("___")
}

fn valid_tag(tag: &str) -> Option<String> {
    let bytes = tag.as_bytes();
    let ok = !bytes.is_empty()
        && bytes.len() <= 128
        && (bytes[0].is_ascii_alphanumeric() || bytes[0] == b'_')
        && bytes
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.' || b == b'-');
    ok.then(|| tag.to_string())
}

fn valid_digest(digest: &str) -> Option<&str> {
    let hex = digest.strip_prefix("sha256:")?;
    (hex.len() == 64
        && hex
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)))
    .then_some(digest)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tag(registry: &str, repository: &str, tag: &str) -> Option<Reference> {
        Some(Reference {
            registry: registry.into(),
            repository: repository.into(),
            version: Version::Tag(tag.into()),
        })
    }

    #[test]
    fn references_with_a_registry_host() {
        assert_eq!(
            Reference::parse("ghcr.io/cilium/ci-kernels:6.6"),
            tag("ghcr.io", "cilium/ci-kernels", "6.6")
        );
        assert_eq!(
            Reference::parse("localhost/kernels"),
            tag("localhost", "kernels", "latest")
        );
        assert_eq!(
            Reference::parse("127.0.0.1:5000/team/kernels:6.1.0-57-amd64"),
            tag("127.0.0.1:5000", "team/kernels", "6.1.0-57-amd64")
        );
        let digest = format!("sha256:{}", "ab".repeat(32));
        let r = Reference::parse(&format!("registry.example:443/k@{digest}")).unwrap();
        assert_eq!(r.version, Version::Digest(digest.clone()));
        assert_eq!(r.host(), "registry.example");
        assert_eq!(r.to_string(), format!("registry.example:443/k@{digest}"));
    }

    #[test]
    fn paths_are_never_references() {
        for text in [
            "vmlinuz",
            "boot/vmlinuz",
            "./kernels/vmlinuz",
            "../kernels/vmlinuz",
            "/boot/vmlinuz",
            "kernels/amd64/vmlinuz",
            "ghcr.io",
            "ghcr.io/",
            "ghcr.io/Cilium/kernels",
            "ghcr.io/cilium//kernels",
            "ghcr.io/cilium/kernels:",
            "ghcr.io/cilium/kernels@sha256:12",
            "host:port/kernels",
            ".hidden/kernels",
        ] {
            assert_eq!(Reference::parse(text), None, "{text}");
        }
    }
}
