//! A test that runs an example of its package through cargo, as some
//! crates' tests do: with virtrun as cargo's runner, cargo in the guest
//! calls virtrun again, which runs the example directly.

#[test]
fn runs_an_example_through_cargo() {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let out = std::process::Command::new(cargo)
        .args(["run", "--offline", "-q", "--example", "hello"])
        .output()
        .expect("cargo runs");
    assert!(
        out.status.success(),
        "{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.stdout, b"hello from the example\n");
}
