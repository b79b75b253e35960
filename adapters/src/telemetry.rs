//! Where telemetry goes: JSON logs with correlation ids on stdout, and the metrics the domain
//! records (`shared::telemetry::metrics`) as CloudWatch Embedded Metric Format documents.
//!
//! Logs: one JSON object per line with `level`, `timestamp`, `message`, the fields of the
//! event's span (`correlation_id`, `event_id`, `incident_id`, `record_id`, `rule`), so a
//! CloudWatch Logs Insights query on one id finds every line of that event. Secrets never reach
//! a log line: the types that hold them print `[redacted]`.

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;

use shared::telemetry::metrics::NAMESPACE;

/// The EMF collector [`init_emf`] installs (tests flush it themselves).
pub use metrics_cloudwatch_embedded::Collector;

/// JSON logs to stdout at `level` (error|warn|info|debug|trace). Call once, in `main`.
pub fn init_logging(level: &str) {
    init_logging_to(level, std::io::stdout);
}

/// JSON logs to any writer (tests capture them).
pub fn init_logging_to<W>(level: &str, writer: W)
where
    W: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    // lambda_runtime logs each raw invocation (headers, query, body: signatures, bearer secrets,
    // the Outbound Message token) at trace: never below info, whatever LOG_LEVEL says.
    let filter = EnvFilter::try_new(format!(
        "{level},aws_config=warn,aws_smithy_runtime=warn,hyper=warn,h2=warn,lambda_runtime=info,lambda_http=info"
    ))
    .unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_target(false)
        .flatten_event(true)
        .with_current_span(true)
        .with_span_list(false)
        .try_init();
}

/// Installs the EMF collector with the `Function` dimension. Returns the collector to flush.
pub fn init_emf(function: &str) -> Option<&'static Collector> {
    metrics_cloudwatch_embedded::Builder::new()
        .cloudwatch_namespace(NAMESPACE)
        .with_dimension("Function", function.to_string())
        .init()
        .ok()
}

/// Writes the metrics gathered during one invocation as one EMF document to stdout.
pub fn flush(collector: Option<&'static Collector>) {
    if let Some(collector) = collector
        && let Err(err) = collector.flush(std::io::stdout())
    {
        tracing::warn!(error = %err, "could not write EMF metrics");
    }
}
