//! Integration tests: one binary (one link of tonic + kube + rhai), one module per area.

// Helpers outside `#[test]` functions are test code too: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

mod crash;
mod executor;
mod harness;
mod run;
