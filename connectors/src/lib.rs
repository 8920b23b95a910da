//! Declarative channel connectors and the generic engines that run them.
//!
//! A channel is described completely by `connectors/<name>.toml` ([`ConnectorDefinition`]);
//! the Rust code here is generic: the mapper with its fixed library of named transforms,
//! the authentication schemes, the answer envelopes a push channel expects back, and the
//! callbacks that tell a channel what became of its petitions.
//! Nothing in this crate does I/O, so every piece is unit-tested as pure logic.

pub mod answer;
pub mod auth;
pub mod callback;
pub mod definition;
pub mod error;
pub mod geo;
pub mod mapping;
pub mod transforms;
pub mod xml;

pub use answer::{Answer, AnswerClass};
pub use auth::{AuthError, AuthScheme};
pub use callback::{
    transport_failure, CallbackError, CallbackEvent, CallbackRequest, CallbackSpec, DeliveryOutcome,
};
pub use definition::{ConnectorDefinition, DefinitionError};
pub use error::FieldError;
pub use mapping::{map_payload, MappedPetition};
