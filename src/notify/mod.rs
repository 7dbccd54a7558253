//! Notifications: templates, transports and the outbox dispatcher (SPEC section 6).
//!
//! **Architecture Invariant:** nothing is sent from the code that causes a notification;
//! the engine writes an outbox row in the same transaction as the cause, with a dedupe
//! key, and only the dispatcher sends.

pub mod address;
pub mod dispatch;
pub mod template;
pub mod transport;
pub mod webhook;

pub use dispatch::{Dispatcher, Round};
pub use template::Templates;
pub use transport::Mailer;
