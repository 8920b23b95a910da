//! A problem with one field of a channel's payload, named by its JSON path.

use serde::Serialize;

/// One problem with the sender's input. `path` is a JSON Pointer into the payload as the
/// sender wrote it (`/ldsj`), or a short name for what is not JSON (`header Authorization`),
/// so the sender can act on it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldError {
    pub path: String,
    pub message: String,
}

impl FieldError {
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            message: message.into(),
        }
    }
}

impl std::fmt::Display for FieldError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}
