//! Every store trait on one DynamoDB table.
