//! Shared helpers for the whole-system tests live in `isx-testkit`.
#![forbid(unsafe_code)]
