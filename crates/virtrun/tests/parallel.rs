//! Many guests at once, as `go test ./...` and `cargo test` start them. A test
//! binary of its own, so that cargo runs it apart from the other guest tests
//! and it starves nothing.

mod common;

use common::{payload, virtrun};
use std::thread;
use std::time::Duration;

#[test]
fn sixteen_guests_at_once_all_answer_correctly() {
    let exit = payload("exit");
    let runs: Vec<_> = (0..16)
        .map(|i| {
            let exit = exit.clone();
            thread::spawn(move || {
                // Every other guest over the UARTs: both transports at once.
                let mut run = virtrun([exit.into_os_string(), (i + 10).to_string().into()])
                    .timeout(Duration::from_secs(600));
                if i % 2 == 1 {
                    run = run.transport("isa");
                }
                (i, run.run())
            })
        })
        .collect();
    for handle in runs {
        let (i, out) = handle.join().unwrap();
        out.assert_code(i + 10).assert_stdout(b"");
    }
}
