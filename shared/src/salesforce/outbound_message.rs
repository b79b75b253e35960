//! Outbound Message SOAP (workflow / flow "Outbound Message" action): parsing the
//! `<notifications>` request, and the `<Ack>true</Ack>` / SOAP Fault answers.
//!
//! Salesforce retries a message for up to 24 hours until it gets the ack, so a receiver acks only
//! once every notification is safely accepted, and answers a fault otherwise.
//!
//! The parser is deliberately strict about what could hurt us: no DOCTYPE (so no external or
//! custom entities, no XXE, no entity expansion bombs), a size cap and a depth cap.
//! Field values are kept as strings (SOAP text carries no JSON types); `xsi:nil="true"` becomes
//! `null`.

use crate::salesforce::ObjectName;
use quick_xml::events::{BytesStart, Event};
use serde_json::{Map, Value};

/// Larger bodies are refused (100 notifications of a wide object are far below this).
pub const MAX_BODY_BYTES: usize = 4 * 1024 * 1024;
/// Deeper nesting is refused (a real message is 6 levels deep).
pub const MAX_DEPTH: usize = 32;
/// Salesforce sends at most 100 notifications per message.
pub const MAX_NOTIFICATIONS: usize = 100;

/// One record change in an Outbound Message.
#[derive(Debug, Clone, PartialEq)]
pub struct Notification {
    /// Notification id: the de-duplication key (a retried message carries the same ids).
    pub id: String,
    /// sObject name from `xsi:type` (`sf:Contact` → `Contact`).
    pub object: ObjectName,
    /// The fields the Outbound Message action selected, by API name (`Id` included).
    pub fields: Map<String, Value>,
}

impl Notification {
    /// The record's id (`sf:Id`), when the action includes it (it always does).
    pub fn record_id(&self) -> Option<&str> {
        self.fields.get("Id").and_then(Value::as_str)
    }
}

/// A parsed Outbound Message.
#[derive(Clone, PartialEq)]
pub struct OutboundMessage {
    pub organization_id: String,
    pub action_id: String,
    /// A live session of the user the action runs as. Never logged (redacted in Debug).
    pub session_id: Option<String>,
    pub enterprise_url: String,
    pub partner_url: String,
    pub notifications: Vec<Notification>,
}

impl std::fmt::Debug for OutboundMessage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutboundMessage")
            .field("organization_id", &self.organization_id)
            .field("action_id", &self.action_id)
            .field("session_id", &self.session_id.as_ref().map(|_| "<redacted>"))
            .field("enterprise_url", &self.enterprise_url)
            .field("partner_url", &self.partner_url)
            .field("notifications", &self.notifications)
            .finish()
    }
}

/// Why an Outbound Message was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OutboundMessageError {
    #[error("Outbound Message is {0} bytes, more than the {MAX_BODY_BYTES} accepted")]
    TooLarge(usize),
    #[error("Outbound Message is not UTF-8")]
    NotUtf8,
    #[error("Outbound Message nests deeper than {MAX_DEPTH} elements")]
    TooDeep,
    #[error("Outbound Message carries a DOCTYPE; refused (no DTDs or entities are accepted)")]
    Doctype,
    #[error("Outbound Message uses the entity `&{0};`; only the XML predefined entities are accepted")]
    UnknownEntity(String),
    #[error("Outbound Message is not well-formed XML: {0}")]
    Xml(String),
    #[error("not an Outbound Message: no soap Envelope/Body/notifications element")]
    NotNotifications,
    #[error("Outbound Message has no {0}")]
    Missing(&'static str),
    #[error("Outbound Message notification {index} has no {what}")]
    NotificationIncomplete { index: usize, what: &'static str },
    #[error("Outbound Message carries {0} notifications, more than {MAX_NOTIFICATIONS}")]
    TooManyNotifications(usize),
}

/// A minimal element tree: the parts of XML an Outbound Message uses.
#[derive(Debug, Default)]
struct Element {
    /// Local name (prefix removed).
    name: String,
    /// `xsi:type`, prefix of the value removed.
    xsi_type: Option<String>,
    nil: bool,
    text: String,
    children: Vec<Element>,
}

impl Element {
    fn child(&self, name: &str) -> Option<&Element> {
        self.children.iter().find(|c| c.name == name)
    }
}

fn local(name: &str) -> String {
    match name.rsplit_once(':') {
        Some((_, l)) => l.to_string(),
        None => name.to_string(),
    }
}

fn element_from(start: &BytesStart<'_>) -> Result<Element, OutboundMessageError> {
    let mut el = Element { name: local(start.name().as_ref()), ..Element::default() };
    for attr in start.attributes() {
        let attr = attr.map_err(|e| OutboundMessageError::Xml(e.to_string()))?;
        let key = attr.key.as_ref();
        let value = attr
            .normalized_value(quick_xml::XmlVersion::Implicit1_0)
            .map_err(|e| OutboundMessageError::Xml(e.to_string()))?;
        // Salesforce always binds the schema-instance namespace to `xsi`; accept any prefix.
        match key.rsplit_once(':') {
            Some((_, "type")) => el.xsi_type = Some(local(&value)),
            Some((_, "nil")) => el.nil = value.trim() == "true" || value.trim() == "1",
            _ => {}
        }
    }
    Ok(el)
}

fn predefined_entity(name: &str) -> Option<char> {
    match name {
        "amp" => Some('&'),
        "lt" => Some('<'),
        "gt" => Some('>'),
        "quot" => Some('"'),
        "apos" => Some('\''),
        _ => None,
    }
}

fn parse_tree(text: &str) -> Result<Element, OutboundMessageError> {
    let mut reader = quick_xml::Reader::from_str(text);
    let mut stack: Vec<Element> = vec![Element::default()];
    loop {
        let event = reader.read_event().map_err(|e| OutboundMessageError::Xml(e.to_string()))?;
        match event {
            Event::DocType(_) => return Err(OutboundMessageError::Doctype),
            Event::Start(start) => {
                if stack.len() > MAX_DEPTH {
                    return Err(OutboundMessageError::TooDeep);
                }
                stack.push(element_from(&start)?);
            }
            Event::Empty(start) => {
                if stack.len() > MAX_DEPTH {
                    return Err(OutboundMessageError::TooDeep);
                }
                let el = element_from(&start)?;
                stack.last_mut().expect("root").children.push(el);
            }
            Event::End(_) => {
                let el = stack.pop().expect("balanced");
                let Some(parent) = stack.last_mut() else {
                    return Err(OutboundMessageError::Xml("unbalanced end tag".into()));
                };
                parent.children.push(el);
            }
            Event::Text(t) => {
                stack.last_mut().expect("root").text.push_str(&t.xml10_content());
            }
            Event::CData(c) => {
                stack.last_mut().expect("root").text.push_str(&c.into_inner());
            }
            Event::GeneralRef(r) => {
                let resolved = if r.is_char_ref() {
                    r.resolve_char_ref().map_err(|e| OutboundMessageError::Xml(e.to_string()))?
                } else {
                    let name = r.xml10_content();
                    Some(
                        predefined_entity(&name)
                            .ok_or_else(|| OutboundMessageError::UnknownEntity(name.to_string()))?,
                    )
                };
                if let Some(c) = resolved {
                    stack.last_mut().expect("root").text.push(c);
                }
            }
            Event::Eof => break,
            Event::Decl(_) | Event::PI(_) | Event::Comment(_) => {}
        }
    }
    if stack.len() != 1 {
        return Err(OutboundMessageError::Xml("unclosed element at end of document".into()));
    }
    Ok(stack.pop().expect("root"))
}

fn field_value(el: &Element) -> Value {
    if el.nil {
        Value::Null
    } else if el.children.is_empty() {
        Value::String(el.text.trim().to_string())
    } else {
        // Not sent by Salesforce today (fields are flat), but keep nested data rather than lose it.
        let mut map = Map::new();
        for c in &el.children {
            map.insert(c.name.clone(), field_value(c));
        }
        Value::Object(map)
    }
}

fn text_of(el: &Element, name: &'static str) -> Option<String> {
    el.child(name).map(|c| c.text.trim().to_string()).filter(|s| !s.is_empty())
}

impl OutboundMessage {
    /// Parses an Outbound Message SOAP request body (a UTF-8 BOM is accepted).
    pub fn parse(body: &[u8]) -> Result<Self, OutboundMessageError> {
        if body.len() > MAX_BODY_BYTES {
            return Err(OutboundMessageError::TooLarge(body.len()));
        }
        let text = std::str::from_utf8(body).map_err(|_| OutboundMessageError::NotUtf8)?;
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let root = parse_tree(text)?;
        let notifications_el = root
            .child("Envelope")
            .and_then(|e| e.child("Body"))
            .and_then(|b| b.child("notifications"))
            .ok_or(OutboundMessageError::NotNotifications)?;

        let mut notifications = Vec::new();
        for (index, n) in notifications_el.children.iter().filter(|c| c.name == "Notification").enumerate() {
            let id = text_of(n, "Id").ok_or(OutboundMessageError::NotificationIncomplete { index, what: "Id" })?;
            let sobject =
                n.child("sObject").ok_or(OutboundMessageError::NotificationIncomplete { index, what: "sObject" })?;
            let object = sobject
                .xsi_type
                .clone()
                .filter(|t| !t.is_empty())
                .ok_or(OutboundMessageError::NotificationIncomplete { index, what: "sObject xsi:type" })?;
            let mut fields = Map::new();
            for f in &sobject.children {
                fields.insert(f.name.clone(), field_value(f));
            }
            notifications.push(Notification { id, object: object.into(), fields });
        }
        if notifications.len() > MAX_NOTIFICATIONS {
            return Err(OutboundMessageError::TooManyNotifications(notifications.len()));
        }
        // An empty message (no notifications) is valid SOAP that Salesforce's tooling sends;
        // it carries no header fields either, so they are only required when there is work.
        let required = |name: &'static str| -> Result<String, OutboundMessageError> {
            match text_of(notifications_el, name) {
                Some(v) => Ok(v),
                None if notifications.is_empty() => Ok(String::new()),
                None => Err(OutboundMessageError::Missing(name)),
            }
        };
        Ok(OutboundMessage {
            organization_id: required("OrganizationId")?,
            action_id: required("ActionId")?,
            session_id: text_of(notifications_el, "SessionId"),
            enterprise_url: text_of(notifications_el, "EnterpriseUrl").unwrap_or_default(),
            partner_url: text_of(notifications_el, "PartnerUrl").unwrap_or_default(),
            notifications,
        })
    }

    /// True when the message comes from `org_id`: the same org in either id form, never a
    /// look-alike ([`super::id::same_org`]).
    pub fn is_from_org(&self, org: &super::id::OrgId) -> bool {
        org.is(&self.organization_id)
    }
}

/// The SOAP answer that tells Salesforce the notifications are accepted (byte for byte what
/// Salesforce's reference receiver sends).
pub fn ack_response() -> &'static str {
    concat!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n",
        "<soapenv:Envelope xmlns:soapenv=\"http://schemas.xmlsoap.org/soap/envelope/\" xmlns:xsd=\"http://www.w3.org/2001/XMLSchema\" xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\">\n",
        " <soapenv:Body>\n",
        "  <notificationsResponse xmlns=\"http://soap.sforce.com/2005/09/outbound\">\n",
        "   <Ack>true</Ack>\n",
        "  </notificationsResponse>\n",
        " </soapenv:Body>\n",
        "</soapenv:Envelope>\n",
    )
}

/// Escapes text for an XML element.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            // Control characters are not allowed in XML 1.0.
            c if (c as u32) < 0x20 && !matches!(c, '\n' | '\r' | '\t') => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// A SOAP Fault with the given `faultcode` (`soapenv:Client` or `soapenv:Server`).
pub fn fault_response_with_code(faultcode: &str, message: &str) -> String {
    format!(
        concat!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n",
            "<soapenv:Envelope xmlns:soapenv=\"http://schemas.xmlsoap.org/soap/envelope/\" xmlns:xsd=\"http://www.w3.org/2001/XMLSchema\" xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\">\n",
            " <soapenv:Body>\n",
            "  <soapenv:Fault>\n",
            "   <faultcode>{}</faultcode>\n",
            "   <faultstring>{}</faultstring>\n",
            "   <detail />\n",
            "  </soapenv:Fault>\n",
            " </soapenv:Body>\n",
            "</soapenv:Envelope>\n",
        ),
        escape(faultcode),
        escape(message)
    )
}

/// A SOAP Fault for a failure on our side: Salesforce keeps the message and retries it.
pub fn fault_response(message: &str) -> String {
    fault_response_with_code("soapenv:Server", message)
}

/// `Content-Type` of both answers.
pub const SOAP_CONTENT_TYPE: &str = "text/xml; charset=utf-8";

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> Vec<u8> {
        std::fs::read(format!("{}/tests/fixtures/salesforce/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
    }

    #[test]
    fn contact_message_parses_header_and_fields() {
        let m = OutboundMessage::parse(&fixture("aspnet-webhooks-request-contact-2notifications.xml")).unwrap();
        assert_eq!(m.organization_id, "012345678901234");
        assert_eq!(m.action_id, "04k1I000000bmsHQAQ");
        assert!(m.session_id.as_deref().unwrap().starts_with("00D1I000003qqqE!"));
        assert_eq!(m.enterprise_url, "https://na73.salesforce.com/services/Soap/c/41.0/00D1I000003qqqE");
        assert_eq!(m.partner_url, "https://na73.salesforce.com/services/Soap/u/41.0/00D1I000003qqqE");
        assert_eq!(m.notifications.len(), 2);
        let n = &m.notifications[1];
        assert_eq!(n.id, "04l1I000000fzt9QAA");
        assert_eq!(n.object, "Contact");
        assert_eq!(n.record_id(), Some("0031I0000081tb0QAA"));
        assert_eq!(n.fields["Email"], "drb24@cornell.edu");
        assert_eq!(n.fields["Title"], "Supreme Being");
    }

    #[test]
    fn lead_message_with_bom_parses_every_field() {
        let m = OutboundMessage::parse(&fixture("aspnet-webhooks-request-lead-3notifications.xml")).unwrap();
        assert_eq!(m.notifications.len(), 3);
        assert_eq!(m.notifications[0].object, "Lead1");
        assert_eq!(m.notifications[2].fields["FirstName"], "Nora");
        assert_eq!(m.notifications[0].fields["IsConverted"], "false");
        assert_eq!(m.notifications[0].fields.len(), 28);
        // The sample's made-up org id (no `00D`, a suffix that is no checksum) is no org's.
        let ours = crate::salesforce::id::OrgId::parse("00DD0000000FJXT").unwrap();
        assert!(!m.is_from_org(&ours));
        let mut m = m;
        for (presented, is_ours) in [
            ("00DD0000000FJXT", true),
            ("00DD0000000FJXTMA4", true),
            ("00DD0000000FJXt", false),
            ("00D000000000001", false),
            ("0123456789ABCD\u{e9}", false),
        ] {
            m.organization_id = presented.into();
            assert_eq!(m.is_from_org(&ours), is_ours, "{presented}");
        }
    }

    #[test]
    fn empty_message_parses_with_no_notifications() {
        let m = OutboundMessage::parse(&fixture("aspnet-webhooks-request-empty-notifications.xml")).unwrap();
        assert!(m.notifications.is_empty());
    }

    #[test]
    fn debug_redacts_the_session_id() {
        let m = OutboundMessage::parse(&fixture("aspnet-webhooks-request-contact-2notifications.xml")).unwrap();
        let text = format!("{m:?}");
        assert!(!text.contains("AQsAQOjGFnFJ"), "{text}");
        assert!(text.contains("<redacted>"));
    }

    #[test]
    fn doctype_and_external_entities_are_refused() {
        let xxe = br#"<?xml version="1.0"?>
<!DOCTYPE foo [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/"><soapenv:Body><notifications><OrganizationId>&xxe;</OrganizationId></notifications></soapenv:Body></soapenv:Envelope>"#;
        assert_eq!(OutboundMessage::parse(xxe).unwrap_err(), OutboundMessageError::Doctype);
        let undeclared = br#"<Envelope><Body><notifications><OrganizationId>&xxe;</OrganizationId></notifications></Body></Envelope>"#;
        assert_eq!(OutboundMessage::parse(undeclared).unwrap_err(), OutboundMessageError::UnknownEntity("xxe".into()));
    }

    #[test]
    fn predefined_and_character_entities_are_decoded() {
        let body = br#"<e:Envelope xmlns:e="x" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"><e:Body><notifications>
<OrganizationId>00D000000000001</OrganizationId><ActionId>04k</ActionId>
<Notification><Id>04l1</Id><sObject xsi:type="sf:Case" xmlns:sf="urn:sobject.enterprise.soap.sforce.com">
<sf:Id>5005g00000AbCdEAAS</sf:Id><sf:Subject>A &amp; B &lt;3 &#233;</sf:Subject><sf:ClosedDate xsi:nil="true"/><sf:Description/>
</sObject></Notification></notifications></e:Body></e:Envelope>"#;
        let m = OutboundMessage::parse(body).unwrap();
        let f = &m.notifications[0].fields;
        assert_eq!(f["Subject"], "A & B <3 é");
        assert!(f["ClosedDate"].is_null());
        assert_eq!(f["Description"], "");
        assert_eq!(m.notifications[0].object, "Case");
    }

    #[test]
    fn absurd_depth_and_size_are_refused() {
        let deep = format!("{}{}", "<a>".repeat(100), "</a>".repeat(100));
        assert_eq!(OutboundMessage::parse(deep.as_bytes()).unwrap_err(), OutboundMessageError::TooDeep);
        let big = vec![b' '; MAX_BODY_BYTES + 1];
        assert!(matches!(OutboundMessage::parse(&big).unwrap_err(), OutboundMessageError::TooLarge(_)));
    }

    #[test]
    fn wrong_documents_say_why() {
        assert_eq!(OutboundMessage::parse(b"<a><b/></a>").unwrap_err(), OutboundMessageError::NotNotifications);
        assert!(matches!(OutboundMessage::parse(b"<a><b></a>").unwrap_err(), OutboundMessageError::Xml(_)));
        let no_org = br#"<Envelope><Body><notifications><Notification><Id>1</Id><sObject xsi:type="sf:Case"><sf:Id>x</sf:Id></sObject></Notification></notifications></Body></Envelope>"#;
        assert_eq!(OutboundMessage::parse(no_org).unwrap_err(), OutboundMessageError::Missing("OrganizationId"));
    }

    #[test]
    fn ack_is_byte_for_byte_the_reference_answer() {
        let expected = String::from_utf8(fixture("aspnet-webhooks-ack-response.xml")).unwrap();
        assert_eq!(ack_response(), expected);
        let with_bom = String::from_utf8(fixture("aspnet-webhooks-NotificationResponse-ack.xml")).unwrap();
        assert_eq!(ack_response(), with_bom.trim_start_matches('\u{feff}'));
    }

    #[test]
    fn fault_matches_the_reference_template_and_escapes_the_message() {
        let template = String::from_utf8(fixture("aspnet-webhooks-FaultResponse-template.xml")).unwrap();
        assert_eq!(fault_response_with_code("soapenv:Client", "{0}"), template.trim_start_matches('\u{feff}'));
        let f = fault_response("store <down> & retry");
        assert!(f.contains("<faultcode>soapenv:Server</faultcode>"));
        assert!(f.contains("<faultstring>store &lt;down&gt; &amp; retry</faultstring>"));
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..2000)) {
            let _ = OutboundMessage::parse(&bytes);
        }

        #[test]
        fn arbitrary_xml_like_text_never_panics(text in "[<>/a-z:=\"& ;#x0-9!\\[\\]-]{0,400}") {
            let _ = OutboundMessage::parse(text.as_bytes());
        }
    }
}
