//! Compiles `proto/gridsight/v1/*.proto` with protox (pure Rust; no `protoc` needed) and
//! writes the file descriptor set that the reflection service serves.
use std::{env, fs, path::PathBuf};

use prost::Message;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = ["proto/gridsight/v1/gridsight.proto"];
    for f in &files {
        println!("cargo:rerun-if-changed={f}");
    }
    let fds = protox::compile(files, ["proto"])?;
    let out = PathBuf::from(env::var("OUT_DIR")?);
    fs::write(out.join("gridsight_descriptor.bin"), fds.encode_to_vec())?;
    tonic_prost_build::configure()
        // An incident is ~10 times the size of a sensor or camera event: boxed, an
        // evidence item is small, and an alert's 32 items are copied and scanned quickly.
        .boxed(".gridsight.v1.Evidence.item.incident")
        .build_client(true)
        .build_server(true)
        .compile_fds(fds)?;
    Ok(())
}
