//! Logging and tracing for the binary: `tracing` to stderr, filtered by `RUST_LOG` (default
//! `info`), as text or JSON lines; spans exported over OTLP (gRPC) when
//! `OTEL_EXPORTER_OTLP_ENDPOINT` is set (the exporter reads the standard `OTEL_*` variables);
//! and a rate limiter for log lines about bad input.

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::layer::{Layer, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Registry, fmt};

/// Installs the global subscriber (logs only). Safe to call once; later calls are ignored.
pub fn init_logging(json: bool) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = if json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}

/// The OTLP exporter could not be set up.
#[derive(Debug, thiserror::Error)]
#[error("OpenTelemetry exporter: {0}")]
pub struct TelemetryError(String);

/// Flushes and stops span export when dropped or shut down.
#[derive(Debug, Default)]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// True when spans are exported.
    pub fn exporting(&self) -> bool {
        self.provider.is_some()
    }

    /// Exports what is buffered and stops (bounded by the SDK's own timeout).
    pub fn shutdown(self) {
        if let Some(p) = self.provider {
            let _ = p.shutdown();
        }
    }
}

/// Installs the global subscriber: logs as [`init_logging`], plus an OpenTelemetry layer
/// exporting spans over OTLP/gRPC when `OTEL_EXPORTER_OTLP_ENDPOINT` is set. Must be called
/// inside a Tokio runtime (the gRPC channel runs on it).
pub fn init_tracing(json: bool) -> Result<Telemetry, TelemetryError> {
    let provider = match std::env::var_os("OTEL_EXPORTER_OTLP_ENDPOINT") {
        Some(_) => Some(provider()?),
        None => None,
    };
    // Logs follow RUST_LOG; exported spans are those at INFO and above plus kube's per-request
    // `HTTP` spans (DEBUG), whatever the logs show.
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let logs: Box<dyn Layer<Registry> + Send + Sync> = if json {
        Box::new(fmt::layer().json().with_writer(std::io::stderr))
    } else {
        Box::new(fmt::layer().with_writer(std::io::stderr))
    };
    let otel = provider.as_ref().map(|p| {
        tracing_opentelemetry::layer()
            .with_tracer(p.tracer("fulcrum"))
            .with_filter(EnvFilter::new("info,kube_client=debug"))
    });
    let _ = tracing_subscriber::registry()
        .with(logs.with_filter(filter))
        .with(otel)
        .try_init();
    Ok(Telemetry { provider })
}

fn provider() -> Result<SdkTracerProvider, TelemetryError> {
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .build()
        .map_err(|e| TelemetryError(e.to_string()))?;
    let service = std::env::var("OTEL_SERVICE_NAME").unwrap_or_else(|_| "fulcrum".into());
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(Resource::builder().with_service_name(service).build())
        .build())
}

/// Logs at most once per interval, counting what it suppressed.
#[derive(Debug, Default)]
pub struct RateLimitedLog {
    last_ms: i64,
    suppressed: u64,
}

impl RateLimitedLog {
    /// Returns `Some(suppressed count)` when a line may be logged now.
    pub fn allow(&mut self, now_ms: i64, interval_ms: i64) -> Option<u64> {
        if now_ms - self.last_ms >= interval_ms {
            self.last_ms = now_ms;
            Some(std::mem::take(&mut self.suppressed))
        } else {
            self.suppressed += 1;
            None
        }
    }
}
