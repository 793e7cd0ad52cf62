//! A test that opens a file of its package by relative path, as cargo runs
//! integration tests in the package directory.

#[test]
fn reads_its_manifest_by_relative_path() {
    let manifest = std::fs::read_to_string("Cargo.toml").expect("Cargo.toml in the working directory");
    assert!(manifest.contains("name = \"rusthost\""), "{manifest}");
}
