//! Integration tests: one binary (one link of tonic + kube + rhai), one module per area.

mod crash;
mod executor;
mod harness;
mod run;
