//! Test data for virtrun's harness tests: unit tests that `cargo test` runs
//! in a guest through virtrun as the target runner.

/// Names the sign and size of `n`.
pub fn classify(n: i64) -> &'static str {
    match n {
        i64::MIN..=-1 => "negative",
        0 => "zero",
        1..=9 => "small",
        _ => "large",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies() {
        assert_eq!(classify(-1), "negative");
        assert_eq!(classify(0), "zero");
        assert_eq!(classify(5), "small");
        assert_eq!(classify(50), "large");
    }

    /// Holds only in a virtrun guest: PID 1 is virtrun's init, and we are root.
    #[test]
    fn guest_only() {
        let cmdline = std::fs::read("/proc/1/cmdline").expect("reading /proc/1/cmdline");
        assert_eq!(cmdline, b"/init\0", "PID 1 is not virtrun's init");
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        let uid = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
        assert!(uid.split_whitespace().skip(1).all(|id| id == "0"), "{uid}");
    }

    /// Fails when the runner passes `-env VT_FAIL=1` into the guest.
    #[test]
    fn fails_on_request() {
        assert_eq!(std::env::var_os("VT_FAIL"), None, "VT_FAIL is set");
    }
}
