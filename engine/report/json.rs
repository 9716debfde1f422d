//! `--output json`: every event as one JSON object per line on stdout, flushed per line, for
//! scripts and CI. The shape is [`crate::event::Event`]'s serde form (tag `event`), documented
//! in `docs/cli.md`.

use super::{Reporter, Sink};
use crate::event::Event;

/// JSON-lines reporter.
pub struct Json {
    out: Sink,
}

impl Json {
    /// Writes to `out`.
    pub fn new(out: Sink) -> Self {
        Json { out }
    }
}

impl Reporter for Json {
    fn report(&mut self, event: &Event) -> std::io::Result<()> {
        serde_json::to_writer(&mut self.out, event)?;
        self.out.write_all(b"\n")?;
        self.out.flush()
    }
}
