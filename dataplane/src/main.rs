//! hookmesh-dataplane: the webhook gateway's data plane, standalone or in a cluster.

use clap::Parser;
use hookmesh_dataplane::server;
use hookmesh_dataplane::settings::Cli;

/// sled allocates and frees a node copy on every write, and requests are built on tokio workers
/// but freed on the commit thread; glibc's malloc spends a fifth of the ingest CPU on exactly
/// that pattern, mimalloc a fraction of it (see BENCHMARKS.md). Built without transparent huge
/// pages, which would otherwise put 60 MiB in the idle RSS instead of 14.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sled=warn"));
    // A log that cannot be written (stdout on a full disk) must not take a request down with
    // it: by default the subscriber reports such a failure with eprintln!, which panics when
    // stderr is on the same full disk, and the panic drops the connection mid-request.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .log_internal_errors(false);
    if cli.log_format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
    server::run(cli.options()?).await
}
