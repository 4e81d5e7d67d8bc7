//! Watches a key prefix and prints every event, resuming across server restarts.
//!
//! ```text
//! cargo run -p oxcd-client --example watch -- config/ [127.0.0.1:2379]
//! ```

use futures::StreamExt;
use oxcd_client::proto::mvccpb::event::EventType;
use oxcd_client::{Client, WatchOptions};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let Some(prefix) = args.next() else {
        return Err("usage: watch PREFIX [ENDPOINT]".into());
    };
    let endpoint = args.next().unwrap_or_else(|| "127.0.0.1:2379".into());

    let client = Client::connect([endpoint]).await?;
    let mut events = client
        .watch()
        .watch(prefix, WatchOptions::new().with_prefix())
        .await?;
    while let Some(response) = events.next().await {
        for event in response?.events {
            let Some(kv) = event.kv else { continue };
            let kind = if event.r#type == EventType::Delete as i32 {
                "DELETE"
            } else {
                "PUT"
            };
            println!(
                "{kind} {} {} (revision {})",
                String::from_utf8_lossy(&kv.key),
                String::from_utf8_lossy(&kv.value),
                kv.mod_revision
            );
        }
    }
    Ok(())
}
