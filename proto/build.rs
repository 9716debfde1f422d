//! Compiles the project's .proto files with protox (pure Rust, no system protoc).
//!
//! Every `*.proto` file below the crate directory (the include root; hidden directories and
//! `target/` are skipped) is compiled, in sorted order, so adding a file needs no change here.
//! The resulting `FileDescriptorSet` feeds `tonic-prost-build`, which generates the prost
//! messages plus tonic clients and servers for every service. The encoded descriptor set
//! (imports included, e.g. `google/protobuf/*.proto`) is written to
//! `$OUT_DIR/runbook_proto_descriptor.bin` for `runbook_proto::FILE_DESCRIPTOR_SET`.

use std::error::Error;
use std::fs;
use std::path::{Path, PathBuf};

/// Name of the encoded descriptor set in `OUT_DIR`; `src/lib.rs` includes it.
const DESCRIPTOR_FILE: &str = "runbook_proto_descriptor.bin";

fn main() -> Result<(), Box<dyn Error>> {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?);
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);

    let mut protos = Vec::new();
    collect_protos(&root, &root, &mut protos)?;
    protos.sort();
    if protos.is_empty() {
        return Err(format!("no .proto files found under {}", root.display()).into());
    }

    // A directory makes cargo rescan it recursively, so new files and new packages are seen.
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed={}", root.display());
    for proto in &protos {
        println!("cargo:rerun-if-changed={}", root.join(proto).display());
    }

    let mut compiler = protox::Compiler::new([&root])?;
    compiler
        .open_files(&protos)
        .map_err(|e| format!("protox: {e:?}"))?;

    // Descriptor set exported to users (e.g. for gRPC reflection): with imports, no comments.
    compiler.include_imports(true).include_source_info(false);
    write_if_changed(
        &out_dir.join(DESCRIPTOR_FILE),
        &compiler.encode_file_descriptor_set(),
    )?;

    // Descriptor set for code generation, with source info so the proto comments become
    // rustdoc. prost-build needs the imported well-known types in the set to resolve field
    // types; they map to `prost_types` (extern path) and their own output is never included.
    compiler.include_imports(true).include_source_info(true);
    let fds = compiler.file_descriptor_set();

    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .build_transport(true)
        .emit_rerun_if_changed(false)
        .compile_fds(fds)?;

    Ok(())
}

/// Collects the paths (relative to `root`, with `/` separators) of all `.proto` files.
fn collect_protos(root: &Path, dir: &Path, out: &mut Vec<String>) -> Result<(), Box<dyn Error>> {
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with('.') {
            continue;
        }
        if entry.file_type()?.is_dir() {
            if name != "target" {
                collect_protos(root, &path, out)?;
            }
        } else if path.extension().is_some_and(|ext| ext == "proto") {
            let rel = path.strip_prefix(root)?;
            let rel: Vec<String> = rel
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            out.push(rel.join("/"));
        }
    }
    Ok(())
}

/// Writes `bytes` to `path` unless the file already holds exactly those bytes.
fn write_if_changed(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    if fs::read(path).is_ok_and(|old| old == bytes) {
        return Ok(());
    }
    fs::write(path, bytes)
}
