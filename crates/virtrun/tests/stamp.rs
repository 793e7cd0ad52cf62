//! The prebuilt guest inits must match their sources: `scripts/build-guest-init
//! --check` (run by CI) fails as soon as a source file of the init changes
//! without a rebuild.

mod common;

use common::copy_tree;
use std::path::Path;
use std::process::Command;

fn check(root: &Path) -> (bool, String) {
    let out = Command::new("bash")
        .arg(root.join("scripts/build-guest-init"))
        .arg("--check")
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn stamp_check_fails_when_an_init_source_changes() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let copy = tempfile::tempdir().unwrap();
    let root = copy.path();
    for dir in [
        "crates/protocol",
        "crates/sysinit",
        "crates/init",
        "scripts",
        "crates/virtrun/guest",
    ] {
        copy_tree(&repo.join(dir), &root.join(dir));
    }
    for file in ["Cargo.toml", "Cargo.lock"] {
        std::fs::copy(repo.join(file), root.join(file)).unwrap();
    }
    let (ok, stderr) = check(root);
    assert!(ok, "the committed stamp must match the sources: {stderr}");

    let main = root.join("crates/init/src/main.rs");
    let mut source = std::fs::read_to_string(&main).unwrap();
    source.push_str("\n// touched\n");
    std::fs::write(&main, source).unwrap();
    let (ok, stderr) = check(root);
    assert!(!ok, "a changed init source must fail the check");
    assert!(stderr.contains("guest init is stale"), "{stderr}");
}
