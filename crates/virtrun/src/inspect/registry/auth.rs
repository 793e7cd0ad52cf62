//! Registry credentials, from the files Docker and Podman keep them in:
//! `$REGISTRY_AUTH_FILE`, `$XDG_RUNTIME_DIR/containers/auth.json`,
//! `$DOCKER_CONFIG/config.json`, `~/.docker/config.json`, the first that
//! has the registry. Each maps a registry to `auth`, the base64 of
//! `user:password`. Credential helpers are not run.

use serde_json::Value;
use std::path::PathBuf;

/// The files, in the order they are asked.
fn files() -> Vec<PathBuf> {
    let env = |k: &str| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    let mut files = Vec::new();
    files.extend(env("REGISTRY_AUTH_FILE"));
    files.extend(env("XDG_RUNTIME_DIR").map(|d| d.join("containers/auth.json")));
    files.extend(env("DOCKER_CONFIG").map(|d| d.join("config.json")));
    files.extend(env("HOME").map(|d| d.join(".docker/config.json")));
    files
}

/// The `auth` value (base64 of `user:password`) for `registry`
/// (`host[:port]`), if a file has one.
pub fn basic(registry: &str) -> Option<String> {
    files()
        .iter()
        .filter_map(|f| std::fs::read(f).ok())
        .find_map(|bytes| lookup(&bytes, registry))
}

/// The credentials a file's `auths` has for `registry`: under its name, or
/// under a URL with it as the host (`https://index.docker.io/v1/`).
fn lookup(bytes: &[u8], registry: &str) -> Option<String> {
    let v: Value = serde_json::from_slice(bytes).ok()?;
    let auths = v.get("auths")?.as_object()?;
    auths.iter().find_map(|(key, entry)| {
        let host = key
            .trim_start_matches("https://")
            .trim_start_matches("http://")
            .split('/')
            .next()?;
        (host == registry)
            .then(|| entry.get("auth")?.as_str().map(str::to_string))
            .flatten()
            .filter(|a| !a.is_empty())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_by_registry() {
        let file = br#"{"auths":{
            "registry.example:5000":{"auth":"dXNlcjpwYXNz"},
            "https://other.example/v1/":{"auth":"b3RoZXI6c2VjcmV0"},
            "empty.example":{"auth":""}}}"#;
        assert_eq!(
            lookup(file, "registry.example:5000").as_deref(),
            Some("dXNlcjpwYXNz")
        );
        assert_eq!(
            lookup(file, "other.example").as_deref(),
            Some("b3RoZXI6c2VjcmV0")
        );
        assert_eq!(lookup(file, "registry.example"), None);
        assert_eq!(lookup(file, "empty.example"), None);
        assert_eq!(lookup(b"{}", "x"), None);
    }
}
