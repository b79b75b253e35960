//! Salesforce: JWT bearer auth, the REST/Composite client, and the inbound formats (Apex
//! trigger posts and Outbound Message SOAP).
