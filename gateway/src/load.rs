//! load
#[derive(Debug, clap::Args)]
pub struct LoadArgs {}
pub async fn run(_args: LoadArgs) -> anyhow::Result<()> {
    Ok(())
}
