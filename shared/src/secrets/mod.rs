//! Secrets: a source trait, a cache with a max age, and the Secrets Manager source.
