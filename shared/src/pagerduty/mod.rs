//! PagerDuty: Webhooks v3 signature verification and parsing, and the REST API client.
