//! Prints the instances of a service, then every change, until Ctrl-C.
//!
//! ```text
//! cargo run -p oxcd-client --example discover -- greeter [127.0.0.1:2379]
//! ```

use futures::StreamExt;
use oxcd_client::{Client, ServiceChange};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let Some(service) = args.next() else {
        return Err("usage: discover SERVICE [ENDPOINT]".into());
    };
    let endpoint = args.next().unwrap_or_else(|| "127.0.0.1:2379".into());

    let client = Client::connect([endpoint]).await?;
    let mut instances = client.discover(&service).await?;
    for instance in instances.instances() {
        println!(
            "{} {} {}",
            instance.key, instance.address, instance.metadata
        );
    }
    loop {
        tokio::select! {
            change = instances.next() => match change {
                Some(Ok(ServiceChange::Up(instance))) => println!("+ {} {}", instance.key, instance.address),
                Some(Ok(ServiceChange::Down { key })) => println!("- {key}"),
                Some(Err(e)) => return Err(e.into()),
                None => return Ok(()),
            },
            _ = tokio::signal::ctrl_c() => return Ok(()),
        }
    }
}
