//! Composite requests: up to 25 writes in one API call, later ones referring to earlier results
//! with `@{referenceId.id}`, and a per-subrequest reading of the answer so that a caller knows
//! exactly what is done and what is left to retry.

use crate::class::{Class, Classify};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::case_comment;
use super::error::{ApiError, SalesforceError, SubrequestFailure, classify};
use super::{Record, check_id, check_name, encode_segment};

/// Salesforce refuses a composite request with more subrequests than this.
pub const MAX_SUBREQUESTS: usize = 25;

/// One subrequest of a composite request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Subrequest {
    /// `GET`, `POST`, `PATCH`, `DELETE`.
    pub method: String,
    /// Full path from the instance root, e.g. `/services/data/v62.0/sobjects/Case/500...`.
    pub url: String,
    #[serde(rename = "referenceId")]
    pub reference_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<Value>,
}

/// A composite request (`POST composite`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CompositeRequest {
    #[serde(rename = "allOrNone")]
    pub all_or_none: bool,
    #[serde(rename = "compositeRequest")]
    pub subrequests: Vec<Subrequest>,
}

impl CompositeRequest {
    /// Refuses what Salesforce would refuse, before spending an API call on it.
    pub fn validate(&self) -> Result<(), SalesforceError> {
        if self.subrequests.is_empty() {
            return Err(SalesforceError::BadInput("a composite request needs at least one subrequest".into()));
        }
        if self.subrequests.len() > MAX_SUBREQUESTS {
            return Err(SalesforceError::BadInput(format!(
                "a composite request holds at most {MAX_SUBREQUESTS} subrequests, this one has {}; split the writes",
                self.subrequests.len()
            )));
        }
        let mut seen = std::collections::HashSet::new();
        for sub in &self.subrequests {
            check_reference_id(&sub.reference_id)?;
            if !seen.insert(sub.reference_id.as_str()) {
                return Err(SalesforceError::BadInput(format!(
                    "referenceId `{}` is used twice in one composite request",
                    sub.reference_id
                )));
            }
        }
        Ok(())
    }
}

fn check_reference_id(reference: &str) -> Result<(), SalesforceError> {
    let ok = reference.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
        && reference.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if ok {
        Ok(())
    } else {
        Err(SalesforceError::BadInput(format!(
            "referenceId `{reference}` must start with a letter and hold only letters, digits and underscores"
        )))
    }
}

/// One subrequest's answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SubrequestResult {
    #[serde(rename = "referenceId")]
    pub reference_id: String,
    #[serde(rename = "httpStatusCode")]
    pub http_status: u16,
    #[serde(default)]
    pub body: Value,
    #[serde(rename = "httpHeaders", default)]
    pub headers: Map<String, Value>,
}

impl SubrequestResult {
    /// 2xx, and for collection bodies every item succeeded.
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.http_status) && self.errors().is_empty()
    }

    /// The Salesforce errors of this subrequest: the error array of a failed subrequest, or the
    /// `errors` of failed items of an sObject Collection body.
    pub fn errors(&self) -> Vec<ApiError> {
        match &self.body {
            Value::Array(items) => items
                .iter()
                .flat_map(|item| {
                    if item.get("errorCode").is_some() {
                        serde_json::from_value::<ApiError>(item.clone()).into_iter().collect::<Vec<_>>()
                    } else if item.get("success") == Some(&Value::Bool(false)) {
                        item.get("errors")
                            .cloned()
                            .and_then(|e| serde_json::from_value::<Vec<ApiError>>(e).ok())
                            .unwrap_or_default()
                    } else {
                        Vec::new()
                    }
                })
                .collect(),
            _ if !(200..300).contains(&self.http_status) => vec![ApiError {
                error_code: String::new(),
                message: self.body.to_string().chars().take(300).collect(),
                fields: Vec::new(),
            }],
            _ => Vec::new(),
        }
    }

    /// The record id this subrequest created or upserted, when its body says.
    pub fn id(&self) -> Option<&str> {
        self.body.get("id").and_then(Value::as_str)
    }

    /// For an upsert: true when it created the record.
    pub fn created(&self) -> Option<bool> {
        match self.body.get("created") {
            Some(Value::Bool(b)) => Some(*b),
            _ if self.http_status == 201 => Some(true),
            _ => None,
        }
    }

    /// The failure, if this subrequest failed.
    pub fn failure(&self) -> Option<SubrequestFailure> {
        if self.is_success() {
            return None;
        }
        let errors = self.errors();
        let kind = if (200..300).contains(&self.http_status) {
            // A collection with failed items: classify as if it were a 400.
            classify(400, &errors)
        } else {
            classify(self.http_status, &errors)
        };
        Some(SubrequestFailure { reference_id: self.reference_id.clone(), http_status: self.http_status, errors, kind })
    }
}

/// The answer to a composite request (HTTP 200 even when subrequests failed).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CompositeResponse {
    #[serde(rename = "compositeResponse")]
    pub results: Vec<SubrequestResult>,
}

impl CompositeResponse {
    pub fn get(&self, reference_id: &str) -> Option<&SubrequestResult> {
        self.results.iter().find(|r| r.reference_id == reference_id)
    }

    /// Reference ids of the subrequests that succeeded.
    pub fn succeeded(&self) -> Vec<String> {
        self.results.iter().filter(|r| r.is_success()).map(|r| r.reference_id.clone()).collect()
    }

    /// One entry per failed subrequest, with its errors and whether a retry can help.
    pub fn failures(&self) -> Vec<SubrequestFailure> {
        self.results.iter().filter_map(|r| r.failure()).collect()
    }

    pub fn all_succeeded(&self) -> bool {
        self.results.iter().all(SubrequestResult::is_success)
    }

    /// `Ok(self)` when every subrequest succeeded, else a [`SalesforceError::Composite`] that
    /// names what succeeded and what failed.
    pub fn into_result(self) -> Result<Self, SalesforceError> {
        if self.all_succeeded() {
            Ok(self)
        } else {
            Err(SalesforceError::Composite { succeeded: self.succeeded(), failed: self.failures() })
        }
    }

    /// Kind of the overall outcome, `None` when everything succeeded.
    pub fn failure_kind(&self) -> Option<Class> {
        if self.all_succeeded() {
            None
        } else {
            Some(SalesforceError::Composite { succeeded: Vec::new(), failed: self.failures() }.class())
        }
    }
}

/// `@{reference.id}`: the id an earlier subrequest of the same composite created.
pub fn reference(reference_id: &str) -> String {
    format!("@{{{reference_id}.id}}")
}

/// One write, to be put into a composite request.
#[derive(Debug, Clone, PartialEq)]
pub enum Write {
    /// `PATCH sobjects/{object}/{id}`. `id` may be a [`reference`].
    Update { object: String, id: String, fields: Record },
    /// `POST sobjects/{object}`.
    Create { object: String, fields: Record },
    /// `PATCH sobjects/{object}/{ext_field}/{ext_value}`: the idempotent create.
    Upsert { object: String, ext_field: String, ext_value: String, fields: Record },
    /// One or more `CaseComment`s (split at 4000 bytes, each starting with `[PagerDuty]`).
    /// `case_id` may be a [`reference`].
    AddCaseComment { case_id: String, body: String, published: bool },
}

/// Collects writes and turns them into ONE composite request.
#[derive(Debug, Clone)]
pub struct CompositeBuilder {
    api_version: String,
    all_or_none: bool,
    subrequests: Vec<Subrequest>,
}

impl CompositeBuilder {
    /// `api_version` like `62.0` or `v62.0`.
    pub fn new(api_version: &str, all_or_none: bool) -> Self {
        Self { api_version: api_version.trim_start_matches('v').to_string(), all_or_none, subrequests: Vec::new() }
    }

    fn base(&self) -> String {
        format!("/services/data/v{}/sobjects", self.api_version)
    }

    /// Adds one write under `reference_id`. A Case Comment longer than 4000 bytes becomes several
    /// subrequests named `{reference_id}`, `{reference_id}_2`, ...; the returned list names them.
    pub fn push(&mut self, reference_id: &str, write: Write) -> Result<Vec<String>, SalesforceError> {
        check_reference_id(reference_id)?;
        let base = self.base();
        let mut added = Vec::new();
        match write {
            Write::Update { object, id, fields } => {
                check_name(&object)?;
                check_id_or_reference(&id)?;
                self.subrequests.push(Subrequest {
                    method: "PATCH".into(),
                    url: format!("{base}/{object}/{id}"),
                    reference_id: reference_id.into(),
                    body: Some(Value::Object(fields)),
                });
            }
            Write::Create { object, fields } => {
                check_name(&object)?;
                self.subrequests.push(Subrequest {
                    method: "POST".into(),
                    url: format!("{base}/{object}"),
                    reference_id: reference_id.into(),
                    body: Some(Value::Object(fields)),
                });
            }
            Write::Upsert { object, ext_field, ext_value, fields } => {
                check_name(&object)?;
                check_name(&ext_field)?;
                self.subrequests.push(Subrequest {
                    method: "PATCH".into(),
                    url: format!("{base}/{object}/{ext_field}/{}", encode_segment(&ext_value)),
                    reference_id: reference_id.into(),
                    body: Some(Value::Object(fields)),
                });
            }
            Write::AddCaseComment { case_id, body, published } => {
                check_id_or_reference(&case_id)?;
                for (i, chunk) in case_comment::chunks(&body).into_iter().enumerate() {
                    let reference = if i == 0 { reference_id.to_string() } else { format!("{reference_id}_{}", i + 1) };
                    let mut fields = Map::new();
                    fields.insert("ParentId".into(), Value::String(case_id.clone()));
                    fields.insert("CommentBody".into(), Value::String(chunk));
                    fields.insert("IsPublished".into(), Value::Bool(published));
                    self.subrequests.push(Subrequest {
                        method: "POST".into(),
                        url: format!("{base}/CaseComment"),
                        reference_id: reference.clone(),
                        body: Some(Value::Object(fields)),
                    });
                    added.push(reference);
                }
                return Ok(added);
            }
        }
        added.push(reference_id.to_string());
        Ok(added)
    }

    pub fn len(&self) -> usize {
        self.subrequests.len()
    }

    pub fn is_empty(&self) -> bool {
        self.subrequests.is_empty()
    }

    /// The request, refused if it would exceed 25 subrequests or reuse a reference id.
    pub fn build(self) -> Result<CompositeRequest, SalesforceError> {
        let request = CompositeRequest { all_or_none: self.all_or_none, subrequests: self.subrequests };
        request.validate()?;
        Ok(request)
    }
}

fn check_id_or_reference(id: &str) -> Result<(), SalesforceError> {
    if id.starts_with("@{") && id.ends_with(".id}") { check_reference_id(&id[2..id.len() - 4]) } else { check_id(id) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn fields(v: Value) -> Record {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn builder_makes_one_request_with_references() {
        let mut b = CompositeBuilder::new("v62.0", true);
        b.push(
            "newCase",
            Write::Upsert {
                object: "Case".into(),
                ext_field: "PD_Incident_Id__c".into(),
                ext_value: "Q1 2/3".into(),
                fields: fields(json!({"Subject": "Down"})),
            },
        )
        .unwrap();
        b.push("note", Write::AddCaseComment { case_id: reference("newCase"), body: "hello".into(), published: false })
            .unwrap();
        b.push(
            "upd",
            Write::Update {
                object: "Account".into(),
                id: "0011w000004rocHAAQ".into(),
                fields: fields(json!({"Rating": "Hot"})),
            },
        )
        .unwrap();
        let req = b.build().unwrap();
        let v = serde_json::to_value(&req).unwrap();
        assert_eq!(v["allOrNone"], true);
        let subs = v["compositeRequest"].as_array().unwrap();
        assert_eq!(subs.len(), 3);
        assert_eq!(subs[0]["url"], "/services/data/v62.0/sobjects/Case/PD_Incident_Id__c/Q1%202%2F3");
        assert_eq!(subs[0]["method"], "PATCH");
        assert_eq!(subs[1]["body"]["ParentId"], "@{newCase.id}");
        assert_eq!(subs[1]["body"]["CommentBody"], "[PagerDuty] hello");
        assert_eq!(subs[1]["referenceId"], "note");
        assert_eq!(subs[2]["url"], "/services/data/v62.0/sobjects/Account/0011w000004rocHAAQ");
    }

    #[test]
    fn more_than_25_subrequests_are_refused() {
        let mut b = CompositeBuilder::new("62.0", false);
        for i in 0..26 {
            b.push(&format!("c{i}"), Write::Create { object: "Task".into(), fields: Map::new() }).unwrap();
        }
        let err = b.build().unwrap_err();
        assert_eq!(err.class(), Class::BadInput);
        assert!(err.to_string().contains("26"), "{err}");
    }

    #[test]
    fn duplicate_or_bad_reference_ids_are_refused() {
        let mut b = CompositeBuilder::new("62.0", false);
        let create = || Write::Create { object: "Task".into(), fields: Map::new() };
        b.push("a", create()).unwrap();
        b.push("a", create()).unwrap();
        assert!(b.build().is_err());
        let mut b = CompositeBuilder::new("62.0", false);
        assert!(b.push("bad-ref", create()).is_err());
        assert!(
            b.push(
                "x",
                Write::Update { object: "Case/../User".into(), id: "5005g00000AbCdEAAS".into(), fields: Map::new() }
            )
            .is_err()
        );
    }

    #[test]
    fn long_comment_is_several_subrequests_in_one_request() {
        let mut b = CompositeBuilder::new("62.0", false);
        let refs = b
            .push(
                "note",
                Write::AddCaseComment {
                    case_id: "5005g00000AbCdEAAS".into(),
                    body: "word ".repeat(2000),
                    published: true,
                },
            )
            .unwrap();
        assert_eq!(refs, vec!["note", "note_2", "note_3"]);
        assert_eq!(b.build().unwrap().subrequests.len(), 3);
    }

    #[test]
    fn halted_all_or_none_response_reports_each_subrequest() {
        let body =
            include_str!("../../tests/fixtures/salesforce/docs-composite-allOrNone-PROCESSING_HALTED-response.json");
        let resp: CompositeResponse = serde_json::from_str(body).unwrap();
        assert!(!resp.all_succeeded());
        let failures = resp.failures();
        assert_eq!(failures.len(), 2);
        assert_eq!(failures[0].reference_id, "collection1");
        assert_eq!(failures[0].errors[0].error_code, "DUPLICATES_DETECTED");
        assert_eq!(failures[0].kind, Class::Permanent);
        assert_eq!(failures[1].reference_id, "newContact");
        assert_eq!(failures[1].errors[0].error_code, "PROCESSING_HALTED");
        assert_eq!(failures[1].kind, Class::Transient);
        let err = resp.into_result().unwrap_err();
        assert_eq!(err.class(), Class::Permanent);
        assert!(err.to_string().contains("DUPLICATES_DETECTED"));
    }

    #[test]
    fn partial_success_names_what_is_left() {
        let resp: CompositeResponse = serde_json::from_value(json!({"compositeResponse": [
            {"body": {"id": "500A", "success": true, "errors": [], "created": true}, "httpHeaders": {}, "httpStatusCode": 201, "referenceId": "newCase"},
            {"body": null, "httpHeaders": {}, "httpStatusCode": 204, "referenceId": "upd"},
            {"body": [{"message": "unable to obtain exclusive access", "errorCode": "UNABLE_TO_LOCK_ROW", "fields": []}], "httpHeaders": {}, "httpStatusCode": 400, "referenceId": "note"}
        ]}))
        .unwrap();
        assert_eq!(resp.succeeded(), vec!["newCase", "upd"]);
        assert_eq!(resp.get("newCase").unwrap().id(), Some("500A"));
        assert_eq!(resp.get("newCase").unwrap().created(), Some(true));
        let failures = resp.failures();
        assert_eq!(failures.len(), 1);
        assert_eq!(failures[0].reference_id, "note");
        assert_eq!(resp.failure_kind(), Some(Class::Transient));
    }
}
