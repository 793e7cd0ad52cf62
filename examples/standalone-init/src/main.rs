//! An example standalone init built with `virtrun-sysinit`:
//!
//! ```text
//! virtrun -standalone -kernel vmlinuz standalone-init CODE [WORD…]
//! ```
//!
//! It greets on stdout, prints each WORD on a line of its own and exits with
//! CODE, which virtrun then exits with. A WORD `-test.NAME=PATH` (a go test
//! file flag, which virtrun points at a host port and the file the user
//! named) makes it write [`file_content`]`(NAME)` to PATH instead, and the
//! WORD `bulk` makes it write [`BULK`] lines of [`bulk_line`] to stdout. CODE `fail` returns an error and
//! `panic` panics: both still end in a reported failure (exit codes 1 and
//! 101). Two cleanups print their names after that, last registered first.
//!
//! Build it static, so that the guest needs nothing else:
//!
//! ```text
//! cargo build -p standalone-init --target x86_64-unknown-linux-gnu \
//!     --config 'target.x86_64-unknown-linux-gnu.rustflags=["-Ctarget-feature=+crt-static"]'
//! ```

use std::io::Write;
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
                match word
                    .strip_prefix("-test.")
                    .and_then(|flag| flag.split_once('='))
                {
                    Some((name, path)) => std::fs::write(path, file_content(name))?,
                    None if word == "bulk" => {
                        let mut out = std::io::stdout().lock();
                        for i in 0..BULK {
                            out.write_all(&bulk_line(i))?;
                        }
                    }
                    None => println!("word: {word}"),
                }
            }
            match code.as_str() {
                "fail" => Err("asked to fail".into()),
                "panic" => panic!("asked to panic"),
                code => Ok(code.parse()?),
            }
        })
}

/// What the example writes for go test's file flag `-test.NAME`: the name on
/// a line, `\r\n` and `\r\r\n`, then every byte value 256 times, which must
/// all reach the host unchanged.
pub fn file_content(name: &str) -> Vec<u8> {
    let mut content = format!("{name}\n\r\n\r\r\n").into_bytes();
    content.extend((0..=255u8).cycle().take(256 * 256));
    content
}

/// Lines the WORD `bulk` writes: 4 MiB in all.
pub const BULK: u32 = 4096;

/// Line `i` of `bulk`: 1 KiB, its number first.
pub fn bulk_line(i: u32) -> Vec<u8> {
    let mut line = format!("{i:08} ").into_bytes();
    line.resize(1023, b'a' + (i % 26) as u8);
    line.push(b'\n');
    line
}
