//! Compiles `chaos/v1/*.proto` (and the CRI subset, `cri/runtime/v1/api.proto`) with protox (a pure-Rust protobuf compiler: no system `protoc`) and generates
//! the prost messages and tonic clients and servers.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = [
        "chaos/v1/agent.proto",
        "chaos/v1/controller.proto",
        "chaos/v1/gameday.proto",
        "chaos/v1/incidents.proto",
        "chaos/v1/notify.proto",
    ];
    for file in files {
        println!("cargo:rerun-if-changed={file}");
    }
    let descriptors = protox::compile(files, ["."])?;
    // No generated `connect` constructors: they would collide with the `Connect` rpc; clients are built on a
    // `Channel` from [`transport`] (TLS and tokens) instead.
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .build_transport(false)
        .compile_fds(descriptors)?;

    // The Container Runtime Interface: chaos is only ever its client.
    let cri = "cri/runtime/v1/api.proto";
    println!("cargo:rerun-if-changed={cri}");
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(false)
        .build_transport(false)
        .compile_fds(protox::compile([cri], ["cri"])?)?;
    Ok(())
}
