//! The virtrun command.
fn main() {}
