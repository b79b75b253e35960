//! The SQS queue against moto's server: send, receive, delete, delay, depth, and redrive to the DLQ.

use std::time::Duration;

use adapters::sqs::SqsQueue;
use shared::retry::queue::Queue;
use sim::moto;

#[tokio::test]
async fn sqs_queue_sends_receives_deletes_and_counts() {
    let (client, retry_url, _) = moto::queues(5).await;
    let queue = SqsQueue::new(client, retry_url);
    let id = queue.send("hello", Duration::ZERO).await.unwrap();
    queue.send("later", Duration::from_secs(60)).await.unwrap();
    assert_eq!(queue.approximate_depth().await.unwrap(), 2, "delayed messages count too");
    let got = queue.receive(10, Duration::ZERO).await.unwrap();
    assert_eq!(
        got.iter().map(|m| m.body.as_str()).collect::<Vec<_>>(),
        vec!["hello"],
        "the delayed one is not visible yet"
    );
    assert_eq!(got[0].message_id, id);
    assert_eq!(got[0].receive_count, 1);
    assert!((chrono::Utc::now() - got[0].sent_at).num_seconds().abs() < 60, "sent_at is SQS's SentTimestamp");
    queue.delete(&got[0].receipt_handle).await.unwrap();
    assert_eq!(queue.approximate_depth().await.unwrap(), 1);
    queue.purge().await.unwrap();
    assert_eq!(queue.approximate_depth().await.unwrap(), 0);
}

#[tokio::test]
async fn a_delay_beyond_fifteen_minutes_is_capped_instead_of_refused() {
    let (client, retry_url, _) = moto::queues(5).await;
    let queue = SqsQueue::new(client, retry_url);
    queue.send("much later", Duration::from_secs(3600)).await.expect("SQS refuses DelaySeconds > 900; we cap it");
    assert!(queue.receive(10, Duration::ZERO).await.unwrap().is_empty());
}

#[tokio::test]
async fn a_message_received_more_than_max_receive_count_times_lands_in_the_dlq() {
    let (client, retry_url, dlq_url) = moto::queues(5).await;
    let retry = SqsQueue::new(client.clone(), retry_url.clone());
    let dlq = SqsQueue::new(client.clone(), dlq_url);
    retry.send("poison", Duration::ZERO).await.unwrap();
    for attempt in 1..=5u32 {
        let got = retry.receive(1, Duration::ZERO).await.unwrap();
        assert_eq!(got.len(), 1, "receive {attempt}");
        assert_eq!(got[0].receive_count, attempt);
        // The handler failed and does not delete it; make it visible again now rather than
        // sleeping through the visibility timeout.
        client
            .change_message_visibility()
            .queue_url(&retry_url)
            .receipt_handle(&got[0].receipt_handle)
            .visibility_timeout(0)
            .send()
            .await
            .unwrap();
    }
    assert!(retry.receive(1, Duration::ZERO).await.unwrap().is_empty(), "the sixth receive redrives it");
    let dead = dlq.receive(1, Duration::ZERO).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].body, "poison");
    assert_eq!(retry.approximate_depth().await.unwrap(), 0);
}

#[tokio::test]
async fn a_missing_queue_is_a_configuration_error() {
    let sdk = moto::sdk_config().await;
    let url = format!("{}/123456789012/no-such-queue", moto::url().await);
    let queue = SqsQueue::new(aws_sdk_sqs::Client::new(&sdk), url);
    let err = queue.send("x", Duration::ZERO).await.unwrap_err();
    assert!(!err.is_transient(), "{err:?}");
}
