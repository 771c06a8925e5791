//! Rebuild when the built-ins change: strategies, scenarios and migrations
//! are compiled in, and a new file must be noticed too.

fn main() {
    println!("cargo:rerun-if-changed=strategies");
    println!("cargo:rerun-if-changed=scenarios");
    println!("cargo:rerun-if-changed=migrations");
}
