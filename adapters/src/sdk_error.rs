//! An AWS SDK error that got no answer (no connection, a timeout, no credentials) described by
//! its chain of causes, each said once: "dispatch failure: io error: tcp connect error:
//! Connection refused (os error 111)". The SDK's own `DisplayErrorContext` appends a Debug dump
//! of the whole error, which buries that sentence in a log line or a terminal.

/// `err` and its sources, joined by ": ", a cause that repeats the one before left out.
pub fn causes(err: &dyn std::error::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut next: Option<&dyn std::error::Error> = Some(err);
    while let Some(e) = next {
        let text = e.to_string();
        if !text.is_empty() && !parts.last().is_some_and(|last| last.contains(&text)) {
            parts.push(text);
        }
        next = e.source();
    }
    parts.join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("dispatch failure")]
    struct Outer(#[source] std::io::Error);

    #[test]
    fn every_cause_is_said_once_without_a_debug_dump() {
        let err = Outer(std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "Connection refused"));
        assert_eq!(causes(&err), "dispatch failure: Connection refused");
    }
}
