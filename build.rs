//! Rebuild when the built-in strategies change: they are compiled in with
//! `include_str!`, and a new file must be noticed too.

fn main() {
    println!("cargo:rerun-if-changed=strategies");
}
