//! Kafka settings: brokers, topics, group, start position, and librdkafka properties
//! passed through unchanged (TLS, SASL, timeouts), from flags or the environment.

use rdkafka::ClientConfig;

/// Prefix of environment variables that become librdkafka properties:
/// `FULCRUM_KAFKA_CONFIG_SECURITY_PROTOCOL=SASL_SSL` sets `security.protocol`.
pub const ENV_PREFIX: &str = "FULCRUM_KAFKA_CONFIG_";

/// Where a consumer group without committed offsets starts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum StartPosition {
    /// The oldest retained sample (evidence older than the horizon is never acted on).
    Earliest,
    /// Only samples produced from now on.
    #[default]
    Latest,
}

/// Everything needed to talk to Kafka.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KafkaSettings {
    /// `bootstrap.servers`.
    pub brokers: String,
    /// The samples topic.
    pub topic: String,
    /// Consumer group of the operator replicas.
    pub group_id: String,
    /// Dead-letter topic for rejected messages.
    pub dlq_topic: String,
    /// Audit topic for decisions.
    pub audit_topic: String,
    /// Start position for a group without committed offsets.
    pub start: StartPosition,
    /// librdkafka properties, applied last (they override Fulcrum's defaults).
    pub properties: Vec<(String, String)>,
}

/// Default dead-letter topic for a samples topic.
pub fn default_dlq_topic(topic: &str) -> String {
    format!("{topic}.dlq")
}

/// Default audit topic.
pub const DEFAULT_AUDIT_TOPIC: &str = "fulcrum.decisions";

impl KafkaSettings {
    /// Settings with Fulcrum's default topic names.
    pub fn new(brokers: &str, topic: &str, group_id: &str) -> Self {
        Self {
            brokers: brokers.to_owned(),
            topic: topic.to_owned(),
            group_id: group_id.to_owned(),
            dlq_topic: default_dlq_topic(topic),
            audit_topic: DEFAULT_AUDIT_TOPIC.to_owned(),
            start: StartPosition::default(),
            properties: Vec::new(),
        }
    }

    fn base(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", &self.brokers);
        config
    }

    fn with_properties(&self, mut config: ClientConfig) -> ClientConfig {
        for (key, value) in &self.properties {
            config.set(key, value);
        }
        config
    }

    /// The group consumer of the samples topic: offsets are stored only once samples are
    /// applied, and committed in the background (at-least-once).
    pub fn consumer_config(&self) -> ClientConfig {
        let mut config = self.base();
        config
            .set("group.id", &self.group_id)
            .set("enable.auto.commit", "true")
            .set("auto.commit.interval.ms", "1000")
            .set("enable.auto.offset.store", "false")
            .set("enable.partition.eof", "false")
            // High watermarks for fulcrum_consumer_lag (overridable with --kafka-config).
            .set("statistics.interval.ms", "5000")
            .set(
                "auto.offset.reset",
                match self.start {
                    StartPosition::Earliest => "earliest",
                    StartPosition::Latest => "latest",
                },
            );
        self.with_properties(config)
    }

    /// A consumer that reads without a group commit (replay, audit restore).
    pub fn reader_config(&self) -> ClientConfig {
        let mut config = self.base();
        config
            .set("group.id", format!("{}-reader", self.group_id))
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("enable.partition.eof", "true")
            .set("auto.offset.reset", "earliest");
        self.with_properties(config)
    }

    /// The producer for dead letters and decisions: idempotent, acks from all replicas.
    pub fn producer_config(&self) -> ClientConfig {
        let mut config = self.base();
        config
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", "5")
            .set("message.timeout.ms", "30000");
        self.with_properties(config)
    }
}

/// Parses `key=value` (as given to `--kafka-config`).
pub fn parse_property(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.trim().is_empty() => {
            Ok((key.trim().to_owned(), value.to_owned()))
        }
        _ => Err(format!(
            "{text:?} is not key=value (e.g. security.protocol=SASL_SSL)"
        )),
    }
}

/// librdkafka properties from environment variables with [`ENV_PREFIX`], sorted by name.
pub fn env_properties(vars: impl IntoIterator<Item = (String, String)>) -> Vec<(String, String)> {
    let mut props: Vec<(String, String)> = vars
        .into_iter()
        .filter_map(|(k, v)| {
            let rest = k.strip_prefix(ENV_PREFIX)?;
            (!rest.is_empty()).then(|| (rest.to_ascii_lowercase().replace('_', "."), v))
        })
        .collect();
    props.sort();
    props
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn properties_from_flags_and_environment() {
        assert_eq!(
            parse_property("sasl.password=a=b"),
            Ok(("sasl.password".into(), "a=b".into()))
        );
        assert!(parse_property("novalue").is_err());
        assert!(parse_property("=x").is_err());
        let env = env_properties([
            (
                "FULCRUM_KAFKA_CONFIG_SECURITY_PROTOCOL".to_owned(),
                "SASL_SSL".to_owned(),
            ),
            (
                "FULCRUM_KAFKA_CONFIG_SASL_MECHANISMS".to_owned(),
                "PLAIN".to_owned(),
            ),
            ("PATH".to_owned(), "/bin".to_owned()),
        ]);
        assert_eq!(
            env,
            [
                ("sasl.mechanisms".to_owned(), "PLAIN".to_owned()),
                ("security.protocol".to_owned(), "SASL_SSL".to_owned())
            ]
        );
    }

    #[test]
    fn tls_and_sasl_properties_are_supported_by_this_build() {
        use rdkafka::consumer::BaseConsumer;
        use rdkafka::producer::BaseProducer;
        let mut s = KafkaSettings::new("127.0.0.1:1", "samples", "fulcrum");
        s.properties = [
            ("security.protocol", "SASL_SSL"),
            ("sasl.mechanisms", "SCRAM-SHA-512"),
            ("sasl.username", "fulcrum"),
            ("sasl.password", "secret"),
            ("ssl.endpoint.identification.algorithm", "https"),
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .to_vec();
        // Creating a client validates the configuration against the linked librdkafka
        // (without the `ssl` feature this fails with "OpenSSL not available at build time").
        let consumer: Result<BaseConsumer, _> = s.consumer_config().create();
        assert!(consumer.is_ok(), "{:?}", consumer.err());
        let producer: Result<BaseProducer, _> = s.producer_config().create();
        assert!(producer.is_ok(), "{:?}", producer.err());
    }

    #[test]
    fn pass_through_properties_override_defaults() {
        let mut s = KafkaSettings::new("b:9092", "samples", "fulcrum");
        s.properties = vec![("enable.auto.commit".into(), "false".into())];
        let c = s.consumer_config();
        assert_eq!(c.get("enable.auto.commit"), Some("false"));
        assert_eq!(c.get("enable.auto.offset.store"), Some("false"));
        assert_eq!(c.get("auto.offset.reset"), Some("latest"));
        assert_eq!(s.dlq_topic, "samples.dlq");
        assert_eq!(s.producer_config().get("acks"), Some("all"));
    }
}
