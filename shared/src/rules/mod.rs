//! The rule engine: rules documents, validation, pure evaluation into an action plan with an
//! explanation. No I/O here.
