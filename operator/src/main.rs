//! hookmesh-operator: reconciles Sources, Endpoints and Subscriptions into the data-plane config.

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "hookmesh-operator", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Print the CustomResourceDefinitions as YAML (committed in crds/).
    Crdgen,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Crdgen) => {
            print!("{}", hookmesh_api::resources::crds_yaml()?);
            Ok(())
        }
        None => {
            anyhow::bail!("the reconcile loop is not built yet; try `hookmesh-operator crdgen`")
        }
    }
}
