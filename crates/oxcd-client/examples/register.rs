//! Registers a service instance and keeps it registered until Ctrl-C.
//!
//! ```text
//! cargo run -p oxcd-client --example register -- greeter 10.0.0.7:50051 [127.0.0.1:2379]
//! ```

use oxcd_client::{Client, RegistrationState, ServiceInstance};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let (Some(service), Some(address)) = (args.next(), args.next()) else {
        return Err("usage: register SERVICE ADDRESS [ENDPOINT]".into());
    };
    let endpoint = args.next().unwrap_or_else(|| "127.0.0.1:2379".into());

    let client = Client::connect([endpoint]).await?;
    let mut registration = client
        .register(ServiceInstance::new(service, address).with_ttl(10))
        .await?;
    println!("registered: {:?}", registration.state());
    loop {
        tokio::select! {
            state = registration.changed() => {
                println!("now: {state:?}");
                if state == RegistrationState::Deregistered {
                    return Ok(());
                }
            }
            _ = tokio::signal::ctrl_c() => break,
        }
    }
    registration.deregister().await?;
    println!("deregistered");
    Ok(())
}
