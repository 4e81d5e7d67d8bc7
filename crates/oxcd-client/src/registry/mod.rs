//! The service registry: [`Client::register`] an instance, [`Client::discover`] a service,
//! [`Client::balanced_channel`] to call it. Works with etcd's `naming/endpoints` layout and
//! go-zero's, so Rust and Go services find each other (see [`KeyLayout`]).

mod balance;
mod discover;
mod layout;
mod register;

pub use balance::balance;
pub use discover::{Discovery, ServiceChange};
pub use layout::{Instance, KeyLayout};
pub use register::{Registration, RegistrationState, ServiceInstance, DEFAULT_REGISTRATION_TTL};
