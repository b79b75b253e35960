//! What the simulated org sends to the bridge: Apex trigger posts (our own contract, see the helper
//! brief) and workflow Outbound Messages (SOAP 1.1, shaped like
//! `/work/shared/samples/salesforce-outbound-message/*request*.xml`). [`notify`] sends both for the
//! changes the simulator commits.

use std::time::Duration;

use chrono::Utc;
use hmac::{Hmac, KeyInit, Mac};
use serde_json::{Map, Value, json};
use sha2::Sha256;

/// Where and how the simulator posts trigger payloads.
#[derive(Debug, Clone)]
pub struct TriggerTarget {
    pub url: String,
    /// The inbound secret(s); with two, the post carries two `v1=` signatures (rotation).
    pub secrets: Vec<String>,
    /// Objects whose changes fire the trigger (empty = all).
    pub objects: Vec<String>,
}

/// `v1=<hex HMAC-SHA256 over "<timestamp>.<raw body>">`.
pub fn sign_trigger(secret: &str, timestamp: i64, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC accepts any key length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("v1={}", hex::encode(mac.finalize().into_bytes()))
}

/// `PdSyncTriggerHandler.changeId`: lowercase hex SHA-256 of `<request id>|<record Id>|<old
/// record JSON or null>`, first 40 characters. A workflow field update that fires the trigger again
/// in the same transaction carries the same old values (Salesforce passes the values from before
/// the original update), so it is the same change; a second update in the transaction is not.
pub fn change_id(request_id: &str, record_id: &str, old: &Value) -> String {
    use sha2::Digest;
    let old = if old.is_null() { "null".to_string() } else { old.to_string() };
    let digest = Sha256::digest(format!("{request_id}|{record_id}|{old}").as_bytes());
    hex::encode(digest)[..40].to_string()
}

/// Builds and posts the Apex trigger payload.
pub struct TriggerPoster {
    client: reqwest::Client,
    secrets: Vec<String>,
    org_id: String,
}

impl TriggerPoster {
    pub fn new(secrets: Vec<String>, org_id: &str) -> Self {
        TriggerPoster {
            client: reqwest::Client::builder().timeout(Duration::from_secs(10)).build().expect("reqwest client"),
            secrets,
            org_id: org_id.to_string(),
        }
    }

    /// The body: `old` is null for inserts; maps are keyed by record Id, records keep `attributes`
    /// first, exactly as `JSON.serialize(Trigger.oldMap/newMap)` writes them. `change_ids` names
    /// each change as `PdSyncTriggerHandler.changeId` does: a hash of the transaction's request id,
    /// the record Id and its old values (each post is one transaction here).
    pub fn payload(
        &self,
        object: &str,
        operation: &str,
        user: (&str, &str),
        olds: Option<&[Value]>,
        news: &[Value],
    ) -> Value {
        let to_map = |records: &[Value]| {
            let mut m = Map::new();
            for r in records {
                if let Some(id) = r["Id"].as_str() {
                    m.insert(id.to_string(), r.clone());
                }
            }
            Value::Object(m)
        };
        let request_id = uuid::Uuid::new_v4().simple().to_string();
        let old_of = |id: &str| olds.into_iter().flatten().find(|r| r["Id"] == id).cloned().unwrap_or(Value::Null);
        let change_ids: Map<String, Value> = news
            .iter()
            .filter_map(|r| r["Id"].as_str())
            .map(|id| (id.to_string(), Value::String(change_id(&request_id, id, &old_of(id)))))
            .collect();
        json!({
            "schema": 1,
            "org_id": self.org_id,
            "object": object,
            "operation": operation,
            "user": {"id": user.0, "username": user.1},
            "sent_at": Utc::now().format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string(),
            "old": olds.map(to_map).unwrap_or(Value::Null),
            "new": to_map(news),
            "change_ids": change_ids,
        })
    }

    /// Headers for `body` signed at `timestamp` (unix seconds).
    pub fn headers(&self, timestamp: i64, body: &[u8]) -> Vec<(&'static str, String)> {
        let sig = self.secrets.iter().map(|s| sign_trigger(s, timestamp, body)).collect::<Vec<_>>().join(",");
        vec![
            ("X-PDSync-Timestamp", timestamp.to_string()),
            ("X-PDSync-Signature", sig),
            ("Content-Type", "application/json".into()),
        ]
    }

    /// POST signed now; returns the HTTP status (an Apex callout does not retry).
    pub async fn post(&self, url: &str, payload: &Value) -> Result<u16, reqwest::Error> {
        self.post_at(url, payload, Utc::now().timestamp()).await
    }

    /// POST signed with a chosen timestamp (replay-protection tests).
    pub async fn post_at(&self, url: &str, payload: &Value, timestamp: i64) -> Result<u16, reqwest::Error> {
        let body = serde_json::to_vec(payload).expect("JSON");
        let mut req = self.client.post(url);
        for (k, v) in self.headers(timestamp, &body) {
            req = req.header(k, v);
        }
        Ok(req.body(body).send().await?.status().as_u16())
    }
}

/// What happened to one Outbound Message.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboundReport {
    /// Per attempt: HTTP status or `None` for a connection error/timeout.
    pub attempts: Vec<Option<u16>>,
    pub acked: bool,
}

/// Builds Outbound Message envelopes and delivers them until acknowledged.
pub struct OutboundMessenger {
    client: reqwest::Client,
    org_id: String,
    base_url: String,
    pub action_id: String,
    max_attempts: u32,
    backoff: Duration,
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;").replace('\'', "&apos;")
}

impl OutboundMessenger {
    /// Defaults: 6 attempts, 20 ms backoff doubling (Salesforce retries for 24 h; tests need speed).
    pub fn new(org_id: &str, base_url: &str) -> Self {
        OutboundMessenger {
            client: reqwest::Client::builder().timeout(Duration::from_secs(10)).build().expect("reqwest client"),
            org_id: org_id.to_string(),
            base_url: base_url.trim_end_matches('/').to_string(),
            action_id: "04k5g000000SIMAQA".into(),
            max_attempts: 6,
            backoff: Duration::from_millis(20),
        }
    }

    pub fn with_retry(mut self, max_attempts: u32, backoff: Duration) -> Self {
        self.max_attempts = max_attempts.max(1);
        self.backoff = backoff;
        self
    }

    /// The SOAP envelope for up to 100 records of `object`. Notification ids are fresh `04l` ids.
    pub fn envelope(&self, object: &str, records: &[Value]) -> String {
        let notes: Vec<(String, Value)> = records
            .iter()
            .map(|r| {
                let n = uuid::Uuid::new_v4().as_u128() as u64 % 10_000_000_000;
                (super::schema::make_id("04l", n), r.clone())
            })
            .collect();
        self.envelope_with_ids(object, &notes)
    }

    /// The envelope with chosen notification ids (re-sends keep their ids: receivers dedupe on them).
    pub fn envelope_with_ids(&self, object: &str, notifications: &[(String, Value)]) -> String {
        let org15 = &self.org_id[..15.min(self.org_id.len())];
        let mut out = String::new();
        out.push_str(r#"<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" xmlns:xsd="http://www.w3.org/2001/XMLSchema" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">"#);
        out.push_str("\n <soapenv:Body>\n  <notifications xmlns=\"http://soap.sforce.com/2005/09/outbound\">\n");
        out.push_str(&format!("   <OrganizationId>{}</OrganizationId>\n", xml_escape(org15)));
        out.push_str(&format!("   <ActionId>{}</ActionId>\n", xml_escape(&self.action_id)));
        out.push_str(&format!("   <SessionId>{}!AQsimSessionNotForUse</SessionId>\n", xml_escape(org15)));
        out.push_str(&format!(
            "   <EnterpriseUrl>{}/services/Soap/c/62.0/{}</EnterpriseUrl>\n",
            xml_escape(&self.base_url),
            xml_escape(org15)
        ));
        out.push_str(&format!(
            "   <PartnerUrl>{}/services/Soap/u/62.0/{}</PartnerUrl>\n",
            xml_escape(&self.base_url),
            xml_escape(org15)
        ));
        for (nid, rec) in notifications {
            out.push_str("   <Notification>\n");
            out.push_str(&format!("    <Id>{}</Id>\n", xml_escape(nid)));
            out.push_str(&format!(
                "    <sObject xsi:type=\"sf:{}\" xmlns:sf=\"urn:sobject.enterprise.soap.sforce.com\">\n",
                xml_escape(object)
            ));
            // Id first, like Salesforce; then the other scalar fields; nulls and nested objects omitted.
            if let Some(id) = rec["Id"].as_str() {
                out.push_str(&format!("     <sf:Id>{}</sf:Id>\n", xml_escape(id)));
            }
            if let Some(obj) = rec.as_object() {
                for (k, v) in obj {
                    if k == "Id" || k == "attributes" {
                        continue;
                    }
                    let text = match v {
                        Value::String(s) => soap_value(s),
                        Value::Bool(b) => b.to_string(),
                        Value::Number(n) => n.to_string(),
                        _ => continue,
                    };
                    out.push_str(&format!("     <sf:{k}>{}</sf:{k}>\n", xml_escape(&text)));
                }
            }
            out.push_str("    </sObject>\n   </Notification>\n");
        }
        out.push_str("  </notifications>\n </soapenv:Body>\n</soapenv:Envelope>\n");
        out
    }

    /// POST until the answer is a 2xx whose body contains `<Ack>true</Ack>`, or attempts run out.
    pub async fn send(&self, url: &str, xml: &str) -> OutboundReport {
        let mut attempts = Vec::new();
        let mut backoff = self.backoff;
        for i in 0..self.max_attempts {
            if i > 0 {
                tokio::time::sleep(backoff).await;
                backoff = backoff.saturating_mul(2);
            }
            let res = self
                .client
                .post(url)
                .header("Content-Type", "text/xml; charset=utf-8")
                .header("SOAPAction", "\"\"")
                .header("User-Agent", "Jakarta Commons-HttpClient/3.1")
                .body(xml.to_string())
                .send()
                .await;
            match res {
                Ok(r) => {
                    let status = r.status();
                    attempts.push(Some(status.as_u16()));
                    let text = r.text().await.unwrap_or_default();
                    if status.is_success() && is_ack(&text) {
                        return OutboundReport { attempts, acked: true };
                    }
                }
                Err(_) => attempts.push(None),
            }
        }
        OutboundReport { attempts, acked: false }
    }
}

/// REST datetimes (`...+0000`) are written as SOAP `...Z`.
fn soap_value(s: &str) -> String {
    match s.strip_suffix("+0000") {
        Some(base) if s.len() == 28 && s.as_bytes()[10] == b'T' => format!("{base}Z"),
        _ => s.to_string(),
    }
}

/// Does a SOAP response acknowledge (`<Ack>true</Ack>`, any namespace prefix)?
pub fn is_ack(xml: &str) -> bool {
    let compact: String = xml.split_whitespace().collect();
    compact.contains(">true</Ack>") && (compact.contains("<Ack>") || compact.contains(":Ack>"))
}

/// Send trigger posts and outbound messages for committed changes, in the background.
pub(super) fn notify(s: &super::state::Shared, config: &super::SfSimConfig, changes: &[super::Change]) {
    if changes.is_empty() {
        return;
    }
    if let Some(target) = &config.trigger {
        // One trigger invocation per object and operation, like Apex batches of up to 200.
        let mut groups: Vec<(String, String, Vec<super::Change>)> = Vec::new();
        for c in changes.iter().filter(|c| target.objects.is_empty() || target.objects.contains(&c.object)) {
            match groups.iter_mut().find(|g| g.0 == c.object && g.1 == c.operation) {
                Some(g) => g.2.push(c.clone()),
                None => groups.push((c.object.clone(), c.operation.clone(), vec![c.clone()])),
            }
        }
        for (object, operation, list) in groups {
            let poster = TriggerPoster::new(target.secrets.clone(), &config.org_id);
            let username = list[0].username.clone();
            let olds: Option<Vec<Value>> =
                if operation == "update" { Some(list.iter().filter_map(|c| c.old.clone()).collect()) } else { None };
            let news: Vec<Value> = list.iter().map(|c| c.new.clone()).collect();
            let payload = poster.payload(
                &object,
                &operation,
                (&super::state::user_id_for(&username), &username),
                olds.as_deref(),
                &news,
            );
            let url = target.url.clone();
            tokio::spawn(async move {
                let _ = poster.post(&url, &payload).await;
            });
        }
    }
    if let Some((url, objects)) = &config.outbound {
        for c in changes.iter().filter(|c| objects.is_empty() || objects.contains(&c.object)) {
            let messenger = OutboundMessenger::new(&config.org_id, &s.base_url);
            let xml = messenger.envelope(&c.object, std::slice::from_ref(&c.new));
            let url = url.clone();
            tokio::spawn(async move {
                let _ = messenger.send(&url, &xml).await;
            });
        }
    }
}
