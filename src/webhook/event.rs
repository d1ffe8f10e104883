//! The webhook vocabulary, kept here under its old path: it lives in
//! [`crate::domain::webhook`], below the queue that carries it and the
//! connectors that produce it.

pub use crate::domain::webhook::*;
