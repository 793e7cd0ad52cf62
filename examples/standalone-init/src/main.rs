//! An example standalone init built with `virtrun-sysinit`:
//!
//! ```text
//! virtrun -standalone -kernel vmlinuz standalone-init CODE [WORD…]
//! ```
//!
//! It greets on stdout, prints each WORD on a line of its own and exits with
//! CODE, which virtrun then exits with. CODE `fail` returns an error and
//! `panic` panics: both still end in a reported failure (exit codes 1 and
//! 101). Two cleanups print their names after that, last registered first.
//!
//! Build it static, so that the guest needs nothing else:
//!
//! ```text
//! cargo build -p standalone-init --target x86_64-unknown-linux-gnu \
//!     --config 'target.x86_64-unknown-linux-gnu.rustflags=["-Ctarget-feature=+crt-static"]'
//! ```

use virtrun_sysinit::{BoxError, Context, Init};

fn main() -> ! {
    Init::new()
        .step(|ctx: &mut Context| {
            ctx.cleanup(|| {
                println!("cleanup: first");
                Ok(())
            });
            ctx.cleanup(|| {
                println!("cleanup: second");
                Ok(())
            });
            Ok(())
        })
        .run(|_ctx| -> Result<i32, BoxError> {
            let mut args = std::env::args_os()
                .skip(1)
                .map(|a| a.to_string_lossy().into_owned());
            let code = args.next().unwrap_or_default();
            println!("hello from PID {}", std::process::id());
            for word in args {
                println!("word: {word}");
            }
            match code.as_str() {
                "fail" => Err("asked to fail".into()),
                "panic" => panic!("asked to panic"),
                code => Ok(code.parse()?),
            }
        })
}
