//! AttributeValue conversions, kept apart from the queries.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{DateTime, Utc};

use shared::store::StoreError;

pub type Item = HashMap<String, AttributeValue>;

pub fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

pub fn n(value: impl ToString) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

/// A string attribute, or a `Corrupt` error naming the item and attribute.
pub fn get_s<'a>(item: &'a Item, name: &str) -> Result<&'a str, StoreError> {
    match item.get(name) {
        Some(AttributeValue::S(v)) => Ok(v),
        _ => Err(corrupt(item, format!("attribute {name} is missing or not a string"))),
    }
}

pub fn get_opt_s<'a>(item: &'a Item, name: &str) -> Option<&'a str> {
    match item.get(name) {
        Some(AttributeValue::S(v)) => Some(v),
        _ => None,
    }
}

pub fn get_n(item: &Item, name: &str) -> Result<i64, StoreError> {
    match item.get(name) {
        Some(AttributeValue::N(v)) => v.parse().map_err(|_| corrupt(item, format!("attribute {name} is not a number"))),
        _ => Err(corrupt(item, format!("attribute {name} is missing or not a number"))),
    }
}

pub fn millis(at: DateTime<Utc>) -> i64 {
    at.timestamp_millis()
}

pub fn from_millis(item: &Item, name: &str) -> Result<DateTime<Utc>, StoreError> {
    let ms = get_n(item, name)?;
    DateTime::from_timestamp_millis(ms).ok_or_else(|| corrupt(item, format!("attribute {name} is not a time")))
}

pub fn key_of(item: &Item) -> String {
    format!("{}/{}", get_opt_s(item, "pk").unwrap_or("?"), get_opt_s(item, "sk").unwrap_or("?"))
}

pub fn corrupt(item: &Item, message: String) -> StoreError {
    StoreError::Corrupt { key: key_of(item), message }
}
