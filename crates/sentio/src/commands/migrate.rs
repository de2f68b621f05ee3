//! `sentio migrate`: bring the store's schema up to date and create the topics.

use sentio_config::Config;

use crate::wiring;

pub async fn run(config: Config) -> anyhow::Result<()> {
    let store = wiring::open_store(&config).await?;
    let applied = store.applied_migrations().await?;
    for m in &applied {
        say!("migration {:>4}  {}", m.version, m.name);
    }
    say!("store schema at version {}", applied.last().map_or(0, |m| m.version));
    wiring::open_bus(&config, Some(store.as_ref())).await?;
    let t = &config.topics;
    say!("topics ready: {}, {}, {}, {}", t.readings, t.dead_letters, t.alerts, t.status);
    Ok(())
}
