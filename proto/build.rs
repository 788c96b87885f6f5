//! Generates the `pgroute.control.v1` messages and the tonic client/server from the .proto, with
//! protox (pure Rust) instead of protoc, so a fresh machine needs nothing installed.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto = "pgroute/control/v1/control.proto";
    println!("cargo:rerun-if-changed={proto}");
    let descriptors = protox::compile([proto], ["."])?;
    tonic_prost_build::configure()
        // Transport (channels, `connect`) is the callers' choice: the operator serves, the sidecar
        // dials; this crate only needs tonic's codegen.
        .build_transport(false)
        .compile_fds(descriptors)?;
    Ok(())
}
