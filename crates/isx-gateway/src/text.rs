//! Checks of the free-text fields of requests (purpose, justification,
//! reason), collected so that one answer names every bad field.

use isx_core::{FieldViolation, ValidationError};

use crate::error::RequestError;

/// Longest purpose, justification or reason, in bytes.
pub(crate) const MAX_TEXT: usize = 2048;

/// Collects the bad fields of a request.
#[derive(Debug, Default)]
pub(crate) struct Fields(Vec<FieldViolation>);

impl Fields {
    /// `value` must be present and at most [`MAX_TEXT`] bytes.
    pub fn required(&mut self, field: &str, value: &str) {
        if value.trim().is_empty() {
            self.0.push(FieldViolation { field: field.into(), description: "is required".into() });
        } else if value.len() > MAX_TEXT {
            self.0
                .push(FieldViolation { field: field.into(), description: format!("is longer than {MAX_TEXT} bytes") });
        }
    }

    /// Adds violations found elsewhere.
    pub fn extend(&mut self, violations: impl IntoIterator<Item = FieldViolation>) {
        self.0.extend(violations);
    }

    /// Adds one violation.
    pub fn push(&mut self, field: &str, description: &str) {
        self.0.push(FieldViolation { field: field.into(), description: description.into() });
    }

    /// `Ok` if no field was bad, else every bad field.
    pub fn finish(self) -> Result<(), RequestError> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(RequestError::InvalidRequest(ValidationError { violations: self.0 }))
        }
    }
}

/// A Unix-millisecond time as RFC 3339.
pub(crate) fn rfc3339(ms: u64) -> String {
    isx_core::timestamp::rfc3339(&isx_core::timestamp::from_unix_millis(ms))
}
