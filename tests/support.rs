//! Shared helpers for the whole-system tests live in `isx-testkit`; the
//! headless-browser harness for the web console is [`browser`].
#![forbid(unsafe_code)]

#[path = "support/browser.rs"]
pub mod browser;
