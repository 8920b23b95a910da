//! The responder: what goes back to the channels. Each channel's callback sender
//! delivers the outbox the dispatcher writes (see `lifecycle::notify`).

pub mod sender;

pub use sender::{senders, CallbackSender, SenderError};
