//! An example that a test of this package runs through `cargo run`.

fn main() {
    println!("hello from the example");
}
