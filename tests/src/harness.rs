//! The functions wired to the simulators and in-memory AWS parts, exactly as `main.rs` wires them
//! to the real ones: used by the end-to-end tests and by the local demo (`make run`).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use adapters::secrets_manager::SecretsManagerSource;
use adapters::sqs::SqsQueue;
use adapters::wiring::AwsTimeouts;
use chrono::Utc;
use serde_json::Value;
use shared::clock::{Clock, ManualClock, SystemClock};
use shared::handler::context::{Context, Parts, Settings};
use shared::handler::http::{InboundRequest, Reply};
use shared::handler::settle::RetryPolicy;
use shared::handler::{pd_to_sfdc, retry, sfdc_to_pd};
use shared::pagerduty::limiter::RateLimit as ClientRateLimit;
use shared::pagerduty::{PagerdutyAuth, PagerdutyClient, TokenCache};
use shared::retry::breaker::BreakerPolicy;
use shared::retry::envelope::Envelope;
use shared::retry::queue::{MemoryQueue, Queue};
use shared::rules::RulesCache;
use shared::salesforce::{Authenticator, JwtCredentials, SalesforceClient};
use shared::secrets::{CachedSecrets, Credential, SecretSource, StaticSecrets};
use shared::store::Stores;
use shared::store::memory::MemoryStore;

use crate::pagerduty::{PagerdutySim, PdSimConfig, sign_v1};
use crate::salesforce::{SalesforceSim, SfSimConfig, sign_trigger, test_keys};

/// Demo and test configuration. Not secrets of any real system.
pub const WEBHOOK_SECRET: &str = "demo-webhook-secret-current";
pub const WEBHOOK_SECRET_PREVIOUS: &str = "demo-webhook-secret-previous";
pub const INBOUND_SECRET: &str = "demo-inbound-secret";
/// The token the Outbound Message endpoint URL carries (`?token=`).
pub const OUTBOUND_MESSAGE_TOKEN: &str = "demo-outbound-message-token-0123456789abcdef";
/// The org id of the Outbound Message sample in events/.
pub const ORG_ID: &str = "00D5g0000SIMORGEQ5";
pub const INTEGRATION_USER: &str = "integration@example.com";
pub const PD_FROM: &str = "bridge@example.com";

const WEBHOOK_SECRET_ID: &str = "pd-webhook";
const INBOUND_SECRET_ID: &str = "sf-inbound";
const OUTBOUND_MESSAGE_SECRET_ID: &str = "sf-outbound-message";
const PAGERDUTY_SECRET_ID: &str = "pd-token";

/// What to start.
pub struct HarnessConfig {
    pub rules_yaml: String,
    pub pagerduty: PdSimConfig,
    pub salesforce: SfSimConfig,
    pub retry_policy: RetryPolicy,
    pub breaker_policy: BreakerPolicy,
    /// Keep links, idempotency, audit, rules and breakers in DynamoDB on moto instead of memory.
    pub dynamodb: bool,
    /// Retry queue and DLQ on SQS on moto (redrive as in template.yaml) instead of memory.
    pub sqs: bool,
    /// Signing secrets from Secrets Manager on moto instead of memory.
    pub secrets_manager: bool,
    /// Where the bridge's AWS clients send their calls (a fault proxy in front of moto); moto itself
    /// when `None`. Tables, queues and secrets are created on moto directly.
    pub aws_endpoint: Option<String>,
    /// The AWS SDK clients' timeouts (production's by default).
    pub aws_timeouts: AwsTimeouts,
    /// Timeout of each call to PagerDuty and Salesforce.
    pub http_timeout: Duration,
    /// How long signing secrets are reused before they are read again.
    pub secrets_max_age: Duration,
    /// Count every store call as the DynamoDB requests and units it costs (see `counting_store`).
    pub count_store: bool,
    /// The bridge's own client-side limit on PagerDuty REST calls: production's
    /// (`RateLimit::PAGERDUTY_REST`, 960 per minute) unless a bench lifts it to measure the
    /// function rather than the limit. The simulator's limit is `pagerduty.rate_limit`.
    pub pagerduty_client_limit: ClientRateLimit,
    /// Every instance counts its PagerDuty calls against one shared budget too, as the functions
    /// do (`wiring::build`), on the harness's store (the table when `dynamodb`).
    pub shared_budget: bool,
    /// The handlers queue an event instead of calling a service with less time than this left
    /// before their deadline (production's `Settings::min_time_left` unless a test scales time).
    pub min_time_left: Duration,
    /// The time kept after the last call's timeout to settle (production's
    /// `Settings::settle_margin` unless a test scales time).
    pub settle_margin: Duration,
    /// The simulators stamp with the bridge's manual clock instead of the wall clock (a test
    /// that moves time by hours, and compares both systems' stamps with the bridge's).
    pub simulators_on_bridge_clock: bool,
    /// Where the bridge's clock starts (default: now). The explorer fixes it per seed: where
    /// whole seconds fall among the schedule's acts decides what Salesforce's clock can order,
    /// so a start taken from the real clock made a seed's replay a different schedule.
    pub clock_start: Option<chrono::DateTime<Utc>>,
    /// The PagerDuty token secret's text, read through the secrets cache as the functions read
    /// it (an API key or an OAuth client, whose tokens come from the simulator's token
    /// endpoint). `None`: the fixed key `sim-token`.
    pub pagerduty_secret: Option<String>,
}

impl HarnessConfig {
    pub fn new(rules_yaml: impl Into<String>) -> Self {
        Self {
            rules_yaml: rules_yaml.into(),
            pagerduty: PdSimConfig::default(),
            salesforce: SfSimConfig::default(),
            retry_policy: RetryPolicy::default(),
            breaker_policy: BreakerPolicy { cache_for: Duration::ZERO, ..BreakerPolicy::default() },
            dynamodb: false,
            sqs: false,
            secrets_manager: false,
            aws_endpoint: None,
            aws_timeouts: AwsTimeouts::PRODUCTION,
            http_timeout: Duration::from_secs(5),
            secrets_max_age: Duration::from_secs(300),
            count_store: false,
            simulators_on_bridge_clock: false,
            clock_start: None,
            pagerduty_client_limit: ClientRateLimit::PAGERDUTY_REST,
            shared_budget: false,
            min_time_left: Settings::default().min_time_left,
            settle_margin: Settings::default().settle_margin,
            pagerduty_secret: None,
        }
    }
}

/// The retry queue and DLQ on SQS (when `HarnessConfig::sqs`).
pub struct SqsQueues {
    pub retry: Arc<SqsQueue>,
    pub dlq: Arc<SqsQueue>,
}

/// SQS receives before redrive to the DLQ (template.yaml's `RetryMaxReceiveCount` default).
const MAX_RECEIVE_COUNT: u32 = 20;

/// Both simulators and the bridge's context, on in-memory stores and queues.
pub struct Harness {
    pub pd: PagerdutySim,
    pub sf: SalesforceSim,
    pub ctx: Context,
    /// The stores the context uses (memory, or DynamoDB on moto).
    pub stores: Stores,
    /// The in-memory store (when `dynamodb` is off), for inspection helpers.
    pub store: Arc<MemoryStore>,
    /// Reconciliation's cursors, on the same store as `stores`.
    pub cursors: Arc<dyn shared::store::CursorStore>,
    /// The in-memory retry queue and DLQ (unused when `sqs` is on: see `sqs`).
    pub retry_queue: Arc<MemoryQueue>,
    pub dlq: Arc<MemoryQueue>,
    pub sqs: Option<SqsQueues>,
    /// Retry-queue messages the retry function has handled so far.
    pub retries_handled: AtomicUsize,
    /// The bridge's clock: starts at the wall clock and moves only when told (backoff, breakers).
    pub clock: Arc<ManualClock>,
    /// Store call counts, when `count_store` is on.
    pub store_counter: Option<Arc<crate::counting_store::Counter>>,
    /// What [`Harness::instance`] builds another function instance from.
    wiring: Wiring,
}

/// Everything a function instance is built from that instances share (stores, queues, clock,
/// secrets source, simulators' URLs) or copy (settings, timeouts, policies).
struct Wiring {
    stores: Stores,
    clock: Arc<ManualClock>,
    secrets: Arc<dyn SecretSource>,
    secrets_max_age: Duration,
    retry_queue: Arc<dyn Queue>,
    dead_letter_queue: Arc<dyn Queue>,
    pagerduty_url: String,
    salesforce_url: String,
    /// One HTTP transport (connection pool) for every instance's clients: building a reqwest
    /// client costs about 70 ms in a debug build (TLS roots), and the pool is invisible to the
    /// bridge's logic.
    http: Arc<dyn shared::transport::Transport>,
    http_timeout: Duration,
    /// Where the PagerDuty client reads its credential ([`HarnessConfig::pagerduty_secret`]).
    pagerduty_secret_id: Option<String>,
    pagerduty_client_limit: ClientRateLimit,
    /// Where the shared PagerDuty budget lives, when the instances share one.
    budget_store: Option<Arc<dyn shared::store::RateBudgetStore>>,
    settings: Settings,
    retry_policy: RetryPolicy,
    breaker_policy: BreakerPolicy,
}

impl Wiring {
    /// A new function instance, as Lambda starts one: its own PagerDuty and Salesforce clients
    /// (rate limiter, caches, session), rules cache, secrets cache and breaker caches, over the
    /// shared stores, queues, clock and HTTP connection pool. `retry_queue` replaces the shared retry queue (a fault
    /// injector in front of it, for example).
    fn context(&self, retry_queue: Option<Arc<dyn Queue>>) -> Context {
        let clock = self.clock.clone();
        let secrets = Arc::new(CachedSecrets::new(self.secrets.clone(), clock.clone(), self.secrets_max_age));
        let pd_url = url::Url::parse(&self.pagerduty_url).expect("sim url");
        let pagerduty = match &self.pagerduty_secret_id {
            None => PagerdutyClient::new(self.http.clone(), pd_url, "sim-token".into(), PD_FROM.into()),
            Some(id) => {
                let credential = Credential::stored(secrets.clone(), id, PagerdutyAuth::from_secret);
                // The simulator serves the token endpoint too; its tokens expire by the wall clock.
                let tokens = TokenCache::new(self.http.clone(), self.pagerduty_url.clone(), Arc::new(SystemClock));
                PagerdutyClient::with_credential(self.http.clone(), pd_url, credential, PD_FROM.into())
                    .with_token_cache(Arc::new(tokens))
            }
        }
        .with_timeout(self.http_timeout)
        .with_rate_limit(self.pagerduty_client_limit);
        let pagerduty = match &self.budget_store {
            Some(store) => pagerduty.with_shared_budget(Arc::new(shared::pagerduty::SharedBudget::new(
                store.clone(),
                shared::pagerduty::SharedLimit::per_minute(self.pagerduty_client_limit),
            ))),
            None => pagerduty,
        };
        let creds = JwtCredentials {
            consumer_key: "sim-consumer-key".into(),
            username: INTEGRATION_USER.into(),
            private_key_pem: test_keys().private_key_pem.into(),
        };
        // The JWT's `exp` is checked against the wall clock by the simulator.
        let auth = Arc::new(
            Authenticator::new(
                self.http.clone(),
                self.salesforce_url.clone(),
                creds,
                Arc::new(SystemClock) as Arc<dyn Clock>,
            )
            .with_audience("https://login.salesforce.com")
            .with_timeout(self.http_timeout),
        );
        let salesforce = SalesforceClient::new(self.http.clone(), auth, "62.0").with_timeout(self.http_timeout);
        Context::new(Parts {
            stores: self.stores.clone(),
            clock: clock.clone(),
            secrets,
            rules: Arc::new(RulesCache::from_store(
                self.stores.rules.clone(),
                clock.clone(),
                chrono::Duration::seconds(60),
            )),
            retry_queue: retry_queue.unwrap_or_else(|| self.retry_queue.clone()),
            dead_letter_queue: self.dead_letter_queue.clone(),
            pagerduty,
            salesforce,
            settings: self.settings.clone(),
            idempotency_ttl: Duration::from_secs(72 * 3600),
            retry_policy: self.retry_policy,
            breaker_policy: self.breaker_policy,
        })
    }
}

fn http() -> Arc<dyn shared::transport::Transport> {
    Arc::new(adapters::http::ReqwestTransport::new().expect("http client"))
}

impl Harness {
    pub async fn start(rules_yaml: &str) -> Self {
        Self::with(HarnessConfig::new(rules_yaml)).await
    }

    pub async fn with(mut config: HarnessConfig) -> Self {
        let clock = Arc::new(ManualClock::new(config.clock_start.unwrap_or_else(Utc::now)));
        if config.simulators_on_bridge_clock {
            let sim_clock = crate::sim_clock::SimClock(clock.clone());
            config.pagerduty.clock = sim_clock.clone();
            config.salesforce.clock = sim_clock;
        }
        let pd = PagerdutySim::start(config.pagerduty).await;
        let sf = SalesforceSim::start(config.salesforce).await;
        let store = Arc::new(MemoryStore::default());
        let aws = config.dynamodb || config.sqs || config.secrets_manager;
        let sdk = if aws {
            Some(crate::moto::bridge_sdk_config(config.aws_endpoint.as_deref(), config.aws_timeouts).await)
        } else {
            None
        };
        let mut cursors: Arc<dyn shared::store::CursorStore> = store.clone();
        let mut budget_store: Arc<dyn shared::store::RateBudgetStore> = store.clone();
        let stores = if let Some(sdk) = sdk.as_ref().filter(|_| config.dynamodb) {
            let (_, table) = crate::moto::table().await;
            let client = aws_sdk_dynamodb::Client::new(sdk);
            cursors = Arc::new(adapters::dynamodb::DynamoStore::new(client.clone(), &table));
            budget_store = Arc::new(adapters::dynamodb::DynamoStore::new(client.clone(), &table));
            adapters::dynamodb::stores(client, &table)
        } else {
            Stores {
                links: store.clone(),
                idempotency: store.clone(),
                audit: store.clone(),
                rules: store.clone(),
                breakers: store.clone(),
            }
        };
        let (stores, store_counter) = if config.count_store {
            let (stores, counter) = crate::counting_store::counting(stores);
            (stores, Some(counter))
        } else {
            (stores, None)
        };
        let webhook_secret =
            serde_json::json!({"current": WEBHOOK_SECRET, "previous": WEBHOOK_SECRET_PREVIOUS}).to_string();
        let inbound_secret = serde_json::json!({"current": INBOUND_SECRET}).to_string();
        let outbound_message_secret = serde_json::json!({"current": OUTBOUND_MESSAGE_TOKEN}).to_string();
        let mut pagerduty_secret_id = None;
        let (secrets, webhook_secret_id, inbound_secret_id, outbound_message_secret_id): (
            Arc<dyn SecretSource>,
            String,
            String,
            String,
        ) = match sdk.as_ref().filter(|_| config.secrets_manager) {
            Some(sdk) => {
                let (_, webhook) = crate::moto::secret(&webhook_secret).await;
                let (_, inbound) = crate::moto::secret(&inbound_secret).await;
                let (_, outbound) = crate::moto::secret(&outbound_message_secret).await;
                if let Some(text) = &config.pagerduty_secret {
                    pagerduty_secret_id = Some(crate::moto::secret(text).await.1);
                }
                let client = aws_sdk_secretsmanager::Client::new(sdk);
                (Arc::new(SecretsManagerSource::new(client)), webhook, inbound, outbound)
            }
            None => (
                {
                    let mut values = HashMap::from([
                        (WEBHOOK_SECRET_ID.to_string(), webhook_secret),
                        (INBOUND_SECRET_ID.to_string(), inbound_secret),
                        (OUTBOUND_MESSAGE_SECRET_ID.to_string(), outbound_message_secret),
                    ]);
                    if let Some(text) = &config.pagerduty_secret {
                        values.insert(PAGERDUTY_SECRET_ID.to_string(), text.clone());
                        pagerduty_secret_id = Some(PAGERDUTY_SECRET_ID.to_string());
                    }
                    Arc::new(StaticSecrets::new(values))
                },
                WEBHOOK_SECRET_ID.to_string(),
                INBOUND_SECRET_ID.to_string(),
                OUTBOUND_MESSAGE_SECRET_ID.to_string(),
            ),
        };
        // Rules come from the store, as in production after `syncctl rules push`.
        stores.rules.put_rules(&config.rules_yaml, "harness", clock.now()).await.expect("memory store");
        let retry_queue = Arc::new(MemoryQueue::new(clock.clone()));
        let dlq = Arc::new(MemoryQueue::new(clock.clone()));
        let sqs = match sdk.as_ref().filter(|_| config.sqs) {
            Some(sdk) => {
                let (_, retry_url, dlq_url) = crate::moto::queues(MAX_RECEIVE_COUNT).await;
                let client = aws_sdk_sqs::Client::new(sdk);
                Some(SqsQueues {
                    retry: Arc::new(SqsQueue::new(client.clone(), retry_url)),
                    dlq: Arc::new(SqsQueue::new(client, dlq_url)),
                })
            }
            None => None,
        };
        let (retry_target, dlq_target): (Arc<dyn Queue>, Arc<dyn Queue>) = match &sqs {
            Some(q) => (q.retry.clone(), q.dlq.clone()),
            None => (retry_queue.clone(), dlq.clone()),
        };
        let wiring = Wiring {
            stores: stores.clone(),
            clock: clock.clone(),
            secrets,
            secrets_max_age: config.secrets_max_age,
            retry_queue: retry_target,
            dead_letter_queue: dlq_target,
            pagerduty_url: pd.base_url(),
            salesforce_url: sf.base_url(),
            http: http(),
            http_timeout: config.http_timeout,
            pagerduty_secret_id,
            pagerduty_client_limit: config.pagerduty_client_limit,
            budget_store: config.shared_budget.then_some(budget_store),
            settings: Settings {
                webhook_secret_id,
                inbound_secret_id,
                org_id: shared::salesforce::id::OrgId::parse(ORG_ID),
                outbound_message_secret_id: Some(outbound_message_secret_id),
                integration_user: INTEGRATION_USER.into(),
                min_time_left: config.min_time_left,
                settle_margin: config.settle_margin,
                ..Settings::default()
            },
            retry_policy: config.retry_policy,
            breaker_policy: config.breaker_policy,
        };
        let ctx = wiring.context(None);
        Self {
            pd,
            sf,
            ctx,
            stores,
            store,
            cursors,
            retry_queue,
            dlq,
            sqs,
            retries_handled: AtomicUsize::new(0),
            clock,
            store_counter,
            wiring,
        }
    }

    /// Another instance of the functions, as Lambda runs several at once: its own clients and
    /// caches (rules, secrets, breakers, Salesforce session, PagerDuty rate limiter) over the same
    /// stores, queues, clock and simulators as [`Harness::ctx`].
    pub fn instance(&self) -> Context {
        self.wiring.context(None)
    }

    /// [`Harness::instance`] sending to `retry_queue` instead of the shared retry queue (for
    /// example a fault injector in front of [`Harness::retry_queue`]).
    pub fn instance_with_retry_queue(&self, retry_queue: Arc<dyn Queue>) -> Context {
        self.wiring.context(Some(retry_queue))
    }

    /// A PagerDuty delivery of `body`, signed with the current secret.
    pub async fn webhook(&self, body: &str, webhook_id: &str) -> Reply {
        let headers = vec![
            ("content-type".into(), "application/json".into()),
            ("x-pagerduty-signature".into(), sign_v1(WEBHOOK_SECRET, body.as_bytes())),
            ("x-webhook-id".into(), webhook_id.into()),
            ("x-webhook-subscription".into(), "PSUB0DEMO".into()),
        ];
        self.webhook_with(body, headers).await
    }

    pub async fn webhook_with(&self, body: &str, headers: Vec<(String, String)>) -> Reply {
        pd_to_sfdc::handle(&self.ctx, self.request(pd_to_sfdc::WEBHOOK_ROUTE, body, headers)).await
    }

    /// An Apex trigger post of `payload`, signed now with the inbound secret.
    pub async fn post_records(&self, payload: &Value) -> Reply {
        sfdc_to_pd::handle(&self.ctx, self.signed_post(sfdc_to_pd::RECORDS_ROUTE, payload)).await
    }

    /// The agent console's post of `payload` to `route`, signed now as the Apex controller signs.
    pub async fn post_console(&self, route: &str, payload: &Value) -> Reply {
        sfdc_to_pd::handle(&self.ctx, self.signed_post(route, payload)).await
    }

    /// A post of `payload` to `route`, signed now with the inbound secret as the Apex classes
    /// sign (to hand to any instance).
    pub fn signed_post(&self, route: &str, payload: &Value) -> InboundRequest {
        let body = payload.to_string();
        let ts = self.clock.now().timestamp();
        let headers = vec![
            ("content-type".into(), "application/json".into()),
            ("x-pdsync-timestamp".into(), ts.to_string()),
            ("x-pdsync-signature".into(), sign_trigger(INBOUND_SECRET, ts, body.as_bytes())),
        ];
        self.request(route, &body, headers)
    }

    pub async fn post_records_with(&self, body: &str, headers: Vec<(String, String)>) -> Reply {
        sfdc_to_pd::handle(&self.ctx, self.request(sfdc_to_pd::RECORDS_ROUTE, body, headers)).await
    }

    /// An Outbound Message of `xml` to the endpoint URL the stack gives (with its token).
    pub async fn outbound_message(&self, xml: &str) -> Reply {
        self.outbound_message_with(xml, &format!("token={OUTBOUND_MESSAGE_TOKEN}")).await
    }

    pub async fn outbound_message_with(&self, xml: &str, query: &str) -> Reply {
        let headers = vec![("content-type".into(), "text/xml; charset=utf-8".into())];
        let mut request = self.request(sfdc_to_pd::OUTBOUND_MESSAGE_ROUTE, xml, headers);
        request.query = query.to_string();
        sfdc_to_pd::handle(&self.ctx, request).await
    }

    /// An EventBridge invocation with `event` (an Event Relay change event), due in 10 s, as
    /// the Lambda adapter hands it to the function.
    pub async fn change_event(&self, event: &Value) -> sfdc_to_pd::ChangeEventReply {
        let request = self.request(sfdc_to_pd::CHANGE_EVENT_ROUTE, &event.to_string(), vec![]);
        sfdc_to_pd::handle_change_event(&self.ctx, request).await
    }

    /// A `POST` of `body` to `path`, due in 10 s.
    pub fn request(&self, path: &str, body: &str, headers: Vec<(String, String)>) -> InboundRequest {
        InboundRequest {
            correlation_id: uuid::Uuid::new_v4().to_string(),
            deadline: Some(self.clock.now() + chrono::Duration::seconds(10)),
            ..InboundRequest::post(path, headers, body.as_bytes())
        }
    }

    /// Runs the retry function over the retry queue until it is empty, moving the clock to each
    /// message's delivery time (no real waiting on the memory queue). Returns how many batches ran.
    pub async fn drain_retries(&self, max_batches: usize) -> usize {
        self.drain_retries_until(None, max_batches).await
    }

    /// As [`Self::drain_retries`], leaving on the memory queue what is due after `until` (a fault
    /// that lasts until then). SQS keeps real time: `until` does not apply to it.
    pub async fn drain_retries_until(&self, until: Option<chrono::DateTime<Utc>>, max_batches: usize) -> usize {
        if let Some(sqs) = &self.sqs {
            return self.drain_sqs(sqs, max_batches).await;
        }
        let mut batches = 0;
        while batches < max_batches {
            let Some(next) = self.retry_queue.next_visible_at() else { break };
            if until.is_some_and(|until| next > until) {
                break;
            }
            if next > self.clock.now() {
                self.clock.set(next);
            }
            let received = self.retry_queue.receive(10, Duration::ZERO).await.expect("memory queue");
            if received.is_empty() {
                continue;
            }
            batches += 1;
            self.run_batch(self.retry_queue.as_ref(), received).await;
        }
        batches
    }

    /// As the SQS event source does: receive a batch, hand it to the retry function, delete what it
    /// did not report as failed. SQS keeps real time (delays, the 1 s visibility timeout), so this
    /// waits for invisible messages, up to 30 s in all. A failed receive or delete is what SQS does
    /// under faults: the message comes back later.
    async fn drain_sqs(&self, sqs: &SqsQueues, max_batches: usize) -> usize {
        let give_up = tokio::time::Instant::now() + Duration::from_secs(30);
        let mut batches = 0;
        let mut last = tokio::time::Instant::now();
        while batches < max_batches && tokio::time::Instant::now() < give_up {
            // The bridge's time runs on meanwhile, ten times faster than SQS's: what waits on it (a
            // lease left by an invocation that could not give it back, a breaker's pause, an
            // event waiting for its subject's opening event) runs out as it would in production.
            let now = tokio::time::Instant::now();
            self.clock.advance(chrono::Duration::from_std((now - last) * 10).unwrap_or_default());
            last = now;
            let received = sqs.retry.receive(10, Duration::ZERO).await.unwrap_or_default();
            if received.is_empty() {
                if sqs.retry.approximate_depth().await.unwrap_or(1) == 0 {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
            batches += 1;
            self.run_batch(sqs.retry.as_ref(), received).await;
        }
        batches
    }

    async fn run_batch(&self, queue: &dyn Queue, received: Vec<shared::retry::queue::ReceivedMessage>) {
        self.retries_handled.fetch_add(received.len(), Ordering::Relaxed);
        let messages = received
            .iter()
            .map(|m| retry::Message {
                message_id: m.message_id.clone(),
                body: m.body.clone(),
                receive_count: m.receive_count,
            })
            .collect();
        let deadline = Some(self.clock.now() + chrono::Duration::seconds(60));
        // As the retry function is wired: it runs the reconcile messages too.
        let runner = shared::reconcile::trigger::Runner { cursors: self.cursors.clone() };
        let failed = retry::handle_batch_reconciling(&self.ctx, Some(&runner), messages, deadline).await;
        for m in received {
            if !failed.contains(&m.message_id) {
                // A lost delete redelivers the message, as SQS would.
                let _ = queue.delete(&m.receipt_handle).await;
            }
        }
    }

    /// Messages still on the retry queue (visible, delayed or in flight).
    pub async fn retry_depth(&self) -> u64 {
        match &self.sqs {
            Some(sqs) => sqs.retry.approximate_depth().await.unwrap_or(u64::MAX),
            None => self.retry_queue.len() as u64,
        }
    }

    /// Envelopes in the memory DLQ.
    pub fn dead_letters(&self) -> Vec<Envelope> {
        self.dlq.bodies().iter().filter_map(|b| Envelope::from_json(b).ok()).collect()
    }

    /// Bodies in the DLQ, memory or SQS (SQS: received once each, so call it at the end).
    pub async fn dead_letter_bodies(&self) -> Vec<String> {
        let Some(sqs) = &self.sqs else { return self.dlq.bodies() };
        let mut bodies = Vec::new();
        loop {
            let got = sqs.dlq.receive(10, Duration::ZERO).await.expect("moto DLQ");
            if got.is_empty() {
                return bodies;
            }
            bodies.extend(got.into_iter().map(|m| m.body));
        }
    }
}

/// A PagerDuty incident as Webhooks v3 puts it in `event.data`, on the demo service.
pub fn incident_data(id: &str, status: &str) -> Value {
    serde_json::json!({
        "id": id, "type": "incident", "number": 7, "status": status, "title": format!("Checkout down ({id})"),
        "urgency": "high", "html_url": format!("https://demo.pagerduty.com/incidents/{id}"),
        "service": {"id": "PSVC001", "type": "service_reference", "summary": "Customer Support"},
        "escalation_policy": {"id": "PEP0001", "type": "escalation_policy_reference", "summary": "Support"},
        "assignees": [], "teams": [], "priority": null
    })
}

/// A Webhooks v3 delivery body.
pub fn delivery(event_id: &str, event_type: &str, at: chrono::DateTime<Utc>, data: Value) -> String {
    serde_json::json!({"event": {"id": event_id, "event_type": event_type, "resource_type": "incident",
        "occurred_at": at.to_rfc3339(), "agent": null, "client": null, "data": data}})
    .to_string()
}

/// The `status` word of a JSON reply (`applied`, `queued`, `duplicate`, ...).
pub fn outcome(reply: &Reply) -> String {
    serde_json::from_str::<Value>(&reply.body)
        .ok()
        .and_then(|v| v["status"].as_str().map(str::to_string))
        .unwrap_or_default()
}

impl Harness {
    /// On-call works in PagerDuty's REST API with their own `From` (not the bridge's): PagerDuty's
    /// answer, which must be a success.
    pub async fn oncall(&self, method: reqwest::Method, path: &str, body: Value) -> Value {
        let response = reqwest::Client::new()
            .request(method, format!("{}{path}", self.pd.base_url()))
            .header("Authorization", "Token token=sim-token")
            .header("Accept", "application/vnd.pagerduty+json;version=2")
            .header("From", "oncall@example.com")
            .json(&body)
            .send()
            .await
            .expect("the PagerDuty simulator answers");
        assert!(response.status().is_success(), "{path}: {}", response.status());
        response.json().await.expect("PagerDuty answers JSON")
    }

    /// Serves the two HTTP functions on a local port, as API Gateway would, so the simulators can
    /// deliver to them (webhooks, trigger posts). Returns the base URL.
    pub async fn serve(&self) -> String {
        use axum::body::Bytes;
        use axum::extract::State;
        use axum::http::{HeaderMap, StatusCode};
        use axum::response::IntoResponse;

        fn reply(r: Reply) -> axum::response::Response {
            let mut response =
                (StatusCode::from_u16(r.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR), r.body).into_response();
            response.headers_mut().insert("content-type", r.content_type.parse().expect("static content type"));
            for (name, value) in r.headers {
                if let Ok(value) = value.parse() {
                    response.headers_mut().insert(name, value);
                }
            }
            response
        }
        // Every request reaches the functions, whatever its method and path, as it would if API
        // Gateway routed more than it does: the functions refuse what is not theirs.
        async fn any(
            State(ctx): State<Context>,
            method: axum::http::Method,
            uri: axum::http::Uri,
            headers: HeaderMap,
            body: Bytes,
        ) -> axum::response::Response {
            let request = InboundRequest {
                method: method.as_str().to_string(),
                path: uri.path().to_string(),
                query: uri.query().unwrap_or_default().to_string(),
                headers: headers
                    .iter()
                    .map(|(k, v)| (k.as_str().to_ascii_lowercase(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
                    .collect(),
                body: body.to_vec(),
                correlation_id: uuid::Uuid::new_v4().to_string(),
                deadline: Some(ctx.clock.now() + chrono::Duration::seconds(10)),
            };
            reply(if request.path == pd_to_sfdc::WEBHOOK_ROUTE {
                pd_to_sfdc::handle(&ctx, request).await
            } else {
                sfdc_to_pd::handle(&ctx, request).await
            })
        }
        let app = axum::Router::new().fallback(any).with_state(self.ctx.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        tokio::spawn(async move { axum::serve(listener, app).await });
        url
    }
}
