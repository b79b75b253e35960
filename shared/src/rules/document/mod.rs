//! The rules document: its data model ([`types`]) and the loader that builds it from YAML and
//! validates it ([`load`]). Everything is re-exported here, so `rules::document::X` paths hold.

mod load;
mod types;

pub use load::{ValidationError, ValidationErrors};
pub use types::*;
