//! Salesforce ids and the describe metadata the simulator knows (Case, CaseComment, Account, Contact).

use serde_json::{Value, json};

const CHECKSUM_ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ012345";
const BASE62: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// The 3-character suffix that turns a case-sensitive 15-char id into the 18-char form:
/// for each 5-char chunk, a 5-bit mask of which characters are uppercase letters.
pub fn checksum_suffix(id15: &str) -> String {
    id15.as_bytes()
        .chunks(5)
        .map(|chunk| {
            let mut bits = 0usize;
            for (i, c) in chunk.iter().enumerate() {
                if c.is_ascii_uppercase() {
                    bits |= 1 << i;
                }
            }
            CHECKSUM_ALPHABET[bits] as char
        })
        .collect()
}

/// An 18-char id for the `n`th record of an object with key prefix `prefix`.
pub fn make_id(prefix: &str, n: u64) -> String {
    let mut digits = [b'0'; 10];
    let mut x = n;
    for d in digits.iter_mut().rev() {
        *d = BASE62[(x % 62) as usize];
        x /= 62;
    }
    // Prefix (3) + a fixed pod/instance part "5g" + 10 base-62 digits = 15 chars.
    let id15 = format!("{prefix}5g{}", String::from_utf8_lossy(&digits));
    let suffix = checksum_suffix(&id15);
    format!("{id15}{suffix}")
}

/// Is `id` shaped like a Salesforce id (15 alphanumerics, or 18 with a correct checksum)?
pub fn well_formed(id: &str) -> bool {
    if !id.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return false;
    }
    match id.len() {
        15 => true,
        18 => checksum_suffix(&id[..15]).eq_ignore_ascii_case(&id[15..]),
        _ => false,
    }
}

/// The 15-char case-sensitive form (Salesforce accepts either form and treats them as equal).
pub fn id15(id: &str) -> &str {
    if id.len() >= 15 { &id[..15] } else { id }
}

/// Key prefix of an object's ids.
pub fn key_prefix(object: &str) -> String {
    match object {
        "Case" => "500".into(),
        "CaseComment" => "00a".into(),
        "Account" => "001".into(),
        "Contact" => "003".into(),
        "User" => "005".into(),
        custom => {
            // Custom objects get a0X-style prefixes; derive the third char from the name so that it
            // is stable for a given object name.
            let h = custom.bytes().fold(7u32, |a, b| a.wrapping_mul(31).wrapping_add(b as u32));
            format!("a0{}", (b'A' + (h % 26) as u8) as char)
        }
    }
}

/// Objects the simulator serves: the described ones, plus any custom object (`__c`).
pub fn object_known(object: &str) -> bool {
    describe(object).is_some() || object.ends_with("__c")
}

#[derive(Debug, Clone)]
pub struct Field {
    pub name: &'static str,
    pub label: &'static str,
    pub kind: &'static str,
    pub length: usize,
    /// Must be given on create (not nillable and not defaulted).
    pub required: bool,
    pub createable: bool,
    pub updateable: bool,
    pub picklist: &'static [&'static str],
    pub reference_to: Option<&'static str>,
}

const fn f(name: &'static str, label: &'static str, kind: &'static str) -> Field {
    Field {
        name,
        label,
        kind,
        length: 0,
        required: false,
        createable: true,
        updateable: true,
        picklist: &[],
        reference_to: None,
    }
}
const fn ro(name: &'static str, label: &'static str, kind: &'static str) -> Field {
    Field {
        name,
        label,
        kind,
        length: 0,
        required: false,
        createable: false,
        updateable: false,
        picklist: &[],
        reference_to: None,
    }
}

pub const CASE_STATUS: &[&str] = &["New", "Working", "Escalated", "Closed"];
pub const CASE_PRIORITY: &[&str] = &["High", "Medium", "Low"];
pub const CASE_ORIGIN: &[&str] = &["Phone", "Email", "Web", "PagerDuty"];
pub const CASE_TYPE: &[&str] = &["Mechanical", "Electrical", "Electronic", "Structural", "Other"];

/// Describe metadata for the standard objects the simulator models. Case requires `Subject` on
/// create in the simulated org (a common org rule; real orgs enforce it through layouts/validation);
/// `Status` and `Priority` are defaulted (`New`, `Medium`). Every described object also accepts custom
/// fields (`*__c`), as real orgs add them.
pub fn describe(object: &str) -> Option<Vec<Field>> {
    let common = [
        ro("Id", "Record ID", "id"),
        ro("CreatedDate", "Created Date", "datetime"),
        ro("CreatedById", "Created By ID", "reference"),
        ro("LastModifiedDate", "Last Modified Date", "datetime"),
        ro("LastModifiedById", "Last Modified By ID", "reference"),
        ro("SystemModstamp", "System Modstamp", "datetime"),
        ro("IsDeleted", "Deleted", "boolean"),
    ];
    let mut fields: Vec<Field> = common.to_vec();
    match object {
        "Case" => fields.extend([
            ro("CaseNumber", "Case Number", "string"),
            Field { length: 255, required: true, ..f("Subject", "Subject", "string") },
            Field { length: 32000, ..f("Description", "Description", "textarea") },
            Field { picklist: CASE_STATUS, length: 255, ..f("Status", "Status", "picklist") },
            Field { picklist: CASE_PRIORITY, length: 255, ..f("Priority", "Priority", "picklist") },
            Field { picklist: CASE_ORIGIN, length: 255, ..f("Origin", "Case Origin", "picklist") },
            Field { picklist: CASE_TYPE, length: 255, ..f("Type", "Case Type", "picklist") },
            Field { length: 255, ..f("Reason", "Case Reason", "string") },
            Field { reference_to: Some("Account"), ..f("AccountId", "Account ID", "reference") },
            Field { reference_to: Some("Contact"), ..f("ContactId", "Contact ID", "reference") },
            Field { reference_to: Some("User"), ..f("OwnerId", "Owner ID", "reference") },
            Field { length: 80, ..f("SuppliedEmail", "Web Email", "email") },
            ro("IsClosed", "Closed", "boolean"),
            f("IsEscalated", "Escalated", "boolean"),
            ro("ClosedDate", "Closed Date", "datetime"),
            // The package's custom fields that are not text (salesforce/force-app/.../Case/fields).
            f("PagerDuty_Resolved_At__c", "PagerDuty Resolved At", "datetime"),
        ]),
        "CaseComment" => fields.extend([
            Field {
                reference_to: Some("Case"),
                required: true,
                updateable: false,
                ..f("ParentId", "Parent ID", "reference")
            },
            Field { length: 4000, ..f("CommentBody", "Body", "textarea") },
            f("IsPublished", "Published", "boolean"),
        ]),
        "Account" => fields.extend([
            Field { length: 255, required: true, ..f("Name", "Account Name", "string") },
            Field { length: 40, ..f("Phone", "Account Phone", "phone") },
            Field { reference_to: Some("User"), ..f("OwnerId", "Owner ID", "reference") },
        ]),
        "Contact" => fields.extend([
            Field { length: 40, ..f("FirstName", "First Name", "string") },
            Field { length: 80, required: true, ..f("LastName", "Last Name", "string") },
            Field { length: 80, ..f("Email", "Email", "email") },
            Field { reference_to: Some("Account"), ..f("AccountId", "Account ID", "reference") },
        ]),
        // Enough of a user for `syncctl setup salesforce --check` to read the integration user.
        "User" => fields.extend([
            Field { length: 80, required: true, ..f("Username", "Username", "string") },
            Field { length: 121, ..f("Name", "Full Name", "string") },
            f("IsActive", "Active", "boolean"),
        ]),
        _ => return None,
    }
    Some(fields)
}

/// The describe document (`GET sobjects/{Object}/describe`), trimmed to the attributes clients use.
pub fn describe_json(object: &str, api_version: &str) -> Option<Value> {
    let fields = describe(object)?;
    let fields: Vec<Value> = fields
        .iter()
        .map(|fd| {
            json!({
                "name": fd.name, "label": fd.label, "type": fd.kind, "length": fd.length,
                "byteLength": fd.length * 3,
                "nillable": !fd.required && fd.kind != "boolean" && fd.createable,
                "defaultedOnCreate": !fd.createable || matches!(fd.name, "Status" | "Priority" | "OwnerId" | "IsPublished" | "IsEscalated"),
                "createable": fd.createable, "updateable": fd.updateable,
                "custom": false, "externalId": false, "idLookup": fd.name == "Id",
                "restrictedPicklist": !fd.picklist.is_empty(),
                "picklistValues": fd.picklist.iter().map(|v| json!({"active": true, "defaultValue": matches!(*v, "New" | "Medium"), "label": v, "validFor": null, "value": v})).collect::<Vec<_>>(),
                "referenceTo": fd.reference_to.map(|r| vec![r]).unwrap_or_default(),
            })
        })
        .collect();
    Some(json!({
        "name": object, "label": object, "keyPrefix": key_prefix(object),
        "createable": true, "updateable": true, "queryable": true, "custom": false,
        "fields": fields,
        "urls": {"sobject": format!("/services/data/{api_version}/sobjects/{object}"),
                 "describe": format!("/services/data/{api_version}/sobjects/{object}/describe"),
                 "rowTemplate": format!("/services/data/{api_version}/sobjects/{object}/{{ID}}")},
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksum_matches_real_18_char_ids_from_the_samples() {
        for id in [
            "0011w000004rocHAAQ",
            "001R00000066cndIAA",
            "0031I0000081tbPQAQ",
            "0031I0000081tb0QAA",
            "04l1I000000fztEQAQ",
            "04k1I000000bmsHQAQ",
        ] {
            assert_eq!(checksum_suffix(&id[..15]), &id[15..], "{id}");
            assert!(well_formed(id));
        }
    }

    #[test]
    fn generated_ids_are_well_formed_unique_and_prefixed() {
        let a = make_id("500", 1);
        let b = make_id("500", 2);
        assert_ne!(a, b);
        assert!(a.starts_with("500") && well_formed(&a) && well_formed(&a[..15]));
        assert!(!well_formed("500xyz"));
        assert!(!well_formed(&format!("{}AAA", &a[..15])) || checksum_suffix(&a[..15]) == "AAA");
        assert!(key_prefix("Sync_Link__c").starts_with("a0"));
        assert_eq!(key_prefix("Sync_Link__c"), key_prefix("Sync_Link__c"));
    }
}
