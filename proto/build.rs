//! Compiles `proto/readmit/v1/*.proto` and `proto/inference/*.proto` (KServe's Open Inference
//! Protocol) with protox (no system protoc) into tonic code and a file descriptor set for gRPC
//! reflection.

use std::path::PathBuf;

use prost::Message as _;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = PathBuf::from("proto");
    let mut files: Vec<PathBuf> = Vec::new();
    for dir in ["readmit/v1", "inference"] {
        for entry in std::fs::read_dir(root.join(dir))? {
            files.push(entry?.path());
        }
        println!("cargo:rerun-if-changed={}", root.join(dir).display());
    }
    files.retain(|p| p.extension().is_some_and(|e| e == "proto"));
    files.sort();
    for file in &files {
        println!("cargo:rerun-if-changed={}", file.display());
    }

    let fds = protox::compile(&files, [&root])?;
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(out_dir.join("readmit_descriptor.bin"), fds.encode_to_vec())?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(fds)?;
    Ok(())
}
