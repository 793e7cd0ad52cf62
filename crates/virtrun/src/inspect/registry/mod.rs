//! Kernels as OCI images, the way the ecosystem keeps them (the kernel at
//! `/boot/vmlinuz`, modules under `/lib/modules/<release>/`), pulled with
//! the OCI distribution API into the cache and used as a kernel directory
//! ([`super::source`]).
//!
//! A pull asks for the reference's manifest (an index picks the binary's
//! architecture; a plain manifest must be of it), verifies every blob
//! against its digest before anything of it is used, applies the layers in
//! order (`layers.rs`) and installs the result under its manifest's digest
//! (`store.rs`), recording the kernel's release. A tag resolved within the
//! last hour (`VIRTRUN_TAG_TTL` seconds) is used without asking the
//! registry; one pulled before runs offline when the registry cannot be
//! reached, saying so in one line.

mod auth;
mod client;
mod layers;
mod manifest;
mod store;

use crate::config::reference::{Reference, Version};
use crate::inspect::elf::Arch;
use crate::trace::{Trace, say};
use client::{Client, HttpError};
use manifest::{Descriptor, Manifest};
use sha2::{Digest, Sha256};
use std::io::{Read, Seek, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant};
use store::{Store, hex};

/// How long a tag's resolution is trusted without asking the registry,
/// unless `VIRTRUN_TAG_TTL` (seconds) says otherwise.
const TAG_TTL: Duration = Duration::from_secs(3600);

/// The largest manifest or configuration read.
const MAX_DOCUMENT: u64 = 4 << 20;

/// The file in a pulled kernel that records its release.
pub const RELEASE_FILE: &str = ".virtrun-release";

/// Why a pull failed.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// No cache to pull into.
    #[error("no cache directory (set VIRTRUN_CACHE or HOME) to pull {0} into")]
    NoCache(String),
    /// The cache could not be written.
    #[error("{0}: {1}")]
    Io(String, std::io::Error),
    /// The registry failed or refused.
    #[error("{reference}: {error}")]
    Http {
        /// The image.
        reference: String,
        /// What went wrong.
        error: HttpError,
    },
    /// A blob's bytes do not match its digest.
    #[error("{reference}: blob {digest}: its bytes do not match its digest (they hash to {got})")]
    Digest {
        /// The image.
        reference: String,
        /// The digest it should have.
        digest: String,
        /// What its bytes hash to.
        got: String,
    },
    /// The image is not a kernel image of the binary's architecture.
    #[error("{0}: {1}")]
    Image(String, String),
}

/// Pulls `reference` for `arch` (or finds it pulled) and returns the kernel
/// directory, which stays in the cache while this process runs.
pub fn pull(reference: &Reference, arch: Arch, trace: &Trace) -> Result<PathBuf, RegistryError> {
    let name = reference.to_string();
    let cache = crate::cache::dir().ok_or_else(|| RegistryError::NoCache(name.clone()))?;
    let io = |what: &str| {
        let what = what.to_string();
        move |e| RegistryError::Io(what, e)
    };
    let store = Store::open(&cache).map_err(io("the cache's images"))?;
    let platform = manifest::platform_arch(arch);
    if let Some(digest) = usable(&store, reference, platform) {
        trace.log(|| format!("{name}: {digest}, pulled before"));
        return store.use_kernel(&digest).map_err(io(&name));
    }
    let _lock = store.lock().map_err(io("the cache's image lock"))?;
    // Another run may have pulled it while this one waited.
    if let Some(digest) = usable(&store, reference, platform) {
        trace.log(|| format!("{name}: {digest}, pulled meanwhile"));
        return store.use_kernel(&digest).map_err(io(&name));
    }
    let mut client = Client::new(&reference.registry, reference.host());
    let http = |error| RegistryError::Http {
        reference: name.clone(),
        error,
    };
    let (digest, config, layers) = match resolve(&mut client, reference, arch) {
        Ok(found) => found,
        Err(ResolveError::Http(HttpError::Unreachable(what, why))) => {
            return offline(&store, reference, platform, trace)
                .ok_or_else(|| http(HttpError::Unreachable(what, why)));
        }
        Err(ResolveError::Http(e)) => return Err(http(e)),
        Err(ResolveError::Other(e)) => return Err(e),
    };
    trace.log(|| format!("{name}: manifest {digest} for linux/{platform}"));
    if !store.complete(&digest) {
        fetch(
            &store,
            &mut client,
            reference,
            &digest,
            &config,
            &layers,
            trace,
        )?;
    }
    store
        .remember(reference, platform, &digest)
        .map_err(io("the cache's image references"))?;
    store.use_kernel(&digest).map_err(io(&name))
}

/// The manifest digest `reference` stands for, pulled completely, when the
/// registry need not be asked: a digest reference, or a tag resolved within
/// the last hour.
fn usable(store: &Store, reference: &Reference, platform: &str) -> Option<String> {
    let known = store.known(reference, platform)?;
    let fresh = match &reference.version {
        Version::Digest(_) => true,
        Version::Tag(_) => known.checked.elapsed().is_ok_and(|age| age < tag_ttl()),
    };
    (fresh && store.complete(&known.digest)).then_some(known.digest)
}

fn tag_ttl() -> Duration {
    std::env::var("VIRTRUN_TAG_TTL")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .map_or(TAG_TTL, Duration::from_secs)
}

/// With the registry out of reach: the digest the reference resolved to
/// last, when it was pulled, with one line saying so.
fn offline(store: &Store, reference: &Reference, platform: &str, trace: &Trace) -> Option<PathBuf> {
    let known = store.known(reference, platform)?;
    if !store.complete(&known.digest) {
        return None;
    }
    let age = known.checked.elapsed().map_or(0, |d| d.as_secs() / 60);
    say(&format!(
        "virtrun: {} cannot be reached: using {reference} as pulled {age} min ago ({})\n",
        reference.registry, known.digest
    ));
    trace.log(|| format!("{reference}: offline, {}", known.digest));
    store.use_kernel(&known.digest).ok()
}

/// Why resolving failed: the registry (perhaps out of reach), or the image.
enum ResolveError {
    Http(HttpError),
    Other(RegistryError),
}

impl From<HttpError> for ResolveError {
    fn from(e: HttpError) -> Self {
        ResolveError::Http(e)
    }
}

/// The manifest for `arch`: its digest, configuration and layers.
fn resolve(
    client: &mut Client,
    reference: &Reference,
    arch: Arch,
) -> Result<(String, Descriptor, Vec<Descriptor>), ResolveError> {
    let name = reference.to_string();
    let image_error = |what: String| ResolveError::Other(RegistryError::Image(name.clone(), what));
    let wanted = match &reference.version {
        Version::Tag(tag) => tag.clone(),
        Version::Digest(digest) => digest.clone(),
    };
    let (mut digest, bytes) = get_manifest(client, reference, &wanted)?;
    if let Version::Digest(d) = &reference.version {
        verify(&name, d, &digest)?;
    }
    let mut manifest = manifest::parse(&bytes).map_err(image_error)?;
    if let Manifest::Index(entries) = &manifest {
        let platform = manifest::platform_arch(arch);
        let chosen = manifest::pick(entries, arch).ok_or_else(|| {
            let has: Vec<String> = entries.iter().map(|(_, o, a)| format!("{o}/{a}")).collect();
            image_error(format!(
                "no manifest for linux/{platform} (it has {})",
                has.join(", ")
            ))
        })?;
        let want = chosen.digest.clone();
        let (got, bytes) = get_manifest(client, reference, &want)?;
        verify(&name, &want, &got)?;
        digest = want;
        manifest = manifest::parse(&bytes).map_err(image_error)?;
    }
    let Manifest::Image { config, layers } = manifest else {
        return Err(image_error("an index inside an index".into()));
    };
    let response = client.get(&blob_path(reference, &config.digest), "*/*")?;
    let bytes = client::read_body(response, MAX_DOCUMENT, &config.digest)?;
    verify(&name, &config.digest, &sha256(&bytes))?;
    let platform = manifest::platform_arch(arch);
    match manifest::config_arch(&bytes) {
        Some(a) if a != platform => {
            return Err(image_error(format!(
                "an image for {a}, not for the binary's {platform}"
            )));
        }
        _ => {}
    }
    Ok((digest, config, layers))
}

/// A manifest by tag or digest, and the digest of its bytes.
fn get_manifest(
    client: &mut Client,
    reference: &Reference,
    wanted: &str,
) -> Result<(String, Vec<u8>), HttpError> {
    let path = format!("{}/manifests/{wanted}", reference.repository);
    let response = client.get(&path, manifest::ACCEPT)?;
    let bytes = client::read_body(response, MAX_DOCUMENT, &path)?;
    Ok((sha256(&bytes), bytes))
}

fn blob_path(reference: &Reference, digest: &str) -> String {
    format!("{}/blobs/{digest}", reference.repository)
}

fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{}", hex(&Sha256::digest(bytes)))
}

fn verify(reference: &str, want: &str, got: &str) -> Result<(), ResolveError> {
    if want == got {
        return Ok(());
    }
    Err(ResolveError::Other(RegistryError::Digest {
        reference: reference.to_string(),
        digest: want.to_string(),
        got: got.to_string(),
    }))
}

/// Downloads the layers, each verified, applies them into a staging
/// directory, records the release and installs the kernel as `digest`.
fn fetch(
    store: &Store,
    client: &mut Client,
    reference: &Reference,
    digest: &str,
    config: &Descriptor,
    layers: &[Descriptor],
    trace: &Trace,
) -> Result<(), RegistryError> {
    let name = reference.to_string();
    let io = |what: &str| {
        let what = format!("{name}: {what}");
        move |e| RegistryError::Io(what, e)
    };
    let staging = store.staging().map_err(io("the cache"))?;
    let total: u64 = layers.iter().map(|l| l.size).sum::<u64>() + config.size;
    let mut progress = Progress::new(&name, total);
    for layer in layers {
        let mut blob = crate::scratch::tmpfile_in(staging.path()).map_err(io("a blob"))?;
        download(client, reference, layer, &mut blob, &mut progress)?;
        blob.rewind().map_err(io(&layer.digest))?;
        layers::apply(staging.path(), &layer.media_type, blob)
            .map_err(io(&format!("layer {}", layer.digest)))?;
    }
    progress.done();
    let found = super::source::in_directory(staging.path())
        .map_err(|_| RegistryError::Image(name.clone(), "no /boot/vmlinuz in the image".into()))?;
    let release = release(&found).unwrap_or_default();
    std::fs::write(staging.path().join(RELEASE_FILE), &release).map_err(io("its release"))?;
    trace.log(|| format!("{name}: pulled {digest}, release {release:?}"));
    store.install(staging, digest).map_err(io("the cache"))
}

/// The kernel's release: the one `lib/modules/*` folder's name, else what
/// the image says.
fn release(found: &super::source::Source) -> Option<String> {
    found
        .modules_dir
        .as_ref()
        .and_then(|d| Some(d.file_name()?.to_string_lossy().into_owned()))
        .or_else(|| super::kernel::read_image(&found.image).ok()?.1)
}

/// Streams blob `layer` into `out`, hashing it, and fails unless the bytes
/// match its digest.
fn download(
    client: &mut Client,
    reference: &Reference,
    layer: &Descriptor,
    out: &mut std::fs::File,
    progress: &mut Progress,
) -> Result<(), RegistryError> {
    let name = reference.to_string();
    let http = |error| RegistryError::Http {
        reference: name.clone(),
        error,
    };
    let response = client
        .get(&blob_path(reference, &layer.digest), "*/*")
        .map_err(http)?;
    let mut body = response.into_body().into_reader();
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = body
            .read(&mut buf)
            .map_err(|e| http(HttpError::Unreachable(layer.digest.clone(), e.to_string())))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        out.write_all(&buf[..n])
            .map_err(|e| RegistryError::Io(format!("{name}: {}", layer.digest), e))?;
        progress.add(n as u64);
    }
    let got = format!("sha256:{}", hex(&hasher.finalize()));
    if got != layer.digest {
        return Err(RegistryError::Digest {
            reference: name,
            digest: layer.digest.clone(),
            got,
        });
    }
    Ok(())
}

/// A pull's progress on stderr, when stderr is a terminal and the pull has
/// taken more than a second.
struct Progress {
    name: String,
    total: u64,
    done: u64,
    start: Instant,
    shown: Option<Instant>,
    terminal: bool,
}

impl Progress {
    fn new(name: &str, total: u64) -> Progress {
        Progress {
            name: name.to_string(),
            total,
            done: 0,
            start: Instant::now(),
            shown: None,
            // SAFETY: isatty(3) on fd 2 touches no memory of ours.
            terminal: unsafe { libc::isatty(2) } == 1,
        }
    }

    fn add(&mut self, n: u64) {
        self.done += n;
        let due = self.start.elapsed() > Duration::from_secs(1)
            && self
                .shown
                .is_none_or(|t| t.elapsed() > Duration::from_millis(200));
        if self.terminal && due {
            let mib = |b: u64| b as f64 / f64::from(1 << 20);
            say(&format!(
                "\rvirtrun: pulling {}: {:.1} of {:.1} MiB",
                self.name,
                mib(self.done),
                mib(self.total)
            ));
            self.shown = Some(Instant::now());
        }
    }

    fn done(&self) {
        if self.shown.is_some() {
            say("\n");
        }
    }
}
