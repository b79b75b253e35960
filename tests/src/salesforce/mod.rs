//! Salesforce simulator (placeholder while the module is written).
