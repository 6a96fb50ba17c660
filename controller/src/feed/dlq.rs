//! The dead-letter topic: rejected messages with their original key, bytes and headers,
//! plus headers naming the reason and where the message came from.

use rdkafka::message::{Header, Headers, Message, OwnedHeaders, OwnedMessage};
use rdkafka::producer::{FutureProducer, FutureRecord};

use fulcrum_engine::sample::DecodeError;

/// Header with the stable reason code of the (first) rejection, e.g. `not_json`.
pub const REASON: &str = "fulcrum.error.reason";
/// Header with the human-readable error(s), one per line.
pub const ERROR: &str = "fulcrum.error.message";
/// Header with the number of rejected samples (a batch may be partly rejected).
pub const REJECTED: &str = "fulcrum.error.rejected";
/// Header with the source topic.
pub const SOURCE_TOPIC: &str = "fulcrum.source.topic";
/// Header with the source partition.
pub const SOURCE_PARTITION: &str = "fulcrum.source.partition";
/// Header with the source offset.
pub const SOURCE_OFFSET: &str = "fulcrum.source.offset";
/// Header with the source message timestamp (ms), when it had one.
pub const SOURCE_TIMESTAMP: &str = "fulcrum.source.timestamp";

/// Header present only when the value was cut to [`MAX_DEAD_LETTER_VALUE_BYTES`]: the
/// original value's length in bytes.
pub const VALUE_BYTES: &str = "fulcrum.error.value_bytes";

/// At most this many error lines go into the [`ERROR`] header.
const MAX_ERROR_LINES: usize = 20;

/// The most bytes of the original value a dead letter carries. With its headers, a dead
/// letter then fits Kafka's default message size limits (1,000,000 bytes in the producer,
/// 1 MB in the broker), which a 1 MiB value plus headers does not: a dead letter that can
/// never be stored would hold the feed back for good.
pub const MAX_DEAD_LETTER_VALUE_BYTES: usize = 960_000;

/// The value a dead letter carries for `payload`: the payload, or its first
/// [`MAX_DEAD_LETTER_VALUE_BYTES`] bytes when it is longer (with the original length).
pub fn dead_letter_value(payload: &[u8]) -> (&[u8], Option<usize>) {
    if payload.len() > MAX_DEAD_LETTER_VALUE_BYTES {
        (&payload[..MAX_DEAD_LETTER_VALUE_BYTES], Some(payload.len()))
    } else {
        (payload, None)
    }
}

/// The headers of a dead letter: the original headers followed by Fulcrum's.
pub fn dead_letter_headers(message: &OwnedMessage, errors: &[DecodeError]) -> OwnedHeaders {
    let mut headers = OwnedHeaders::new_with_capacity(8);
    if let Some(original) = message.headers() {
        for h in original.iter() {
            headers = headers.insert(Header {
                key: h.key,
                value: h.value,
            });
        }
    }
    let text: Vec<String> = errors
        .iter()
        .take(MAX_ERROR_LINES)
        .map(ToString::to_string)
        .collect();
    let fields = [
        (
            REASON,
            errors.first().map_or("unknown", |e| e.reason()).to_owned(),
        ),
        (ERROR, text.join("\n")),
        (REJECTED, errors.len().to_string()),
        (SOURCE_TOPIC, message.topic().to_owned()),
        (SOURCE_PARTITION, message.partition().to_string()),
        (SOURCE_OFFSET, message.offset().to_string()),
    ];
    for (key, value) in &fields {
        headers = headers.insert(Header {
            key,
            value: Some(value.as_bytes()),
        });
    }
    if let Some(ts) = message.timestamp().to_millis() {
        headers = headers.insert(Header {
            key: SOURCE_TIMESTAMP,
            value: Some(ts.to_string().as_bytes()),
        });
    }
    if let Some(original) = message.payload().and_then(|p| dead_letter_value(p).1) {
        headers = headers.insert(Header {
            key: VALUE_BYTES,
            value: Some(original.to_string().as_bytes()),
        });
    }
    headers
}

/// Header present (with the original payload size) when the dead letter was sent without
/// the payload because it was over the size limit.
pub const PAYLOAD_DROPPED: &str = "fulcrum.error.payload_dropped";

/// Produces a dead letter (with the original payload or, when `with_payload` is false,
/// only a [`PAYLOAD_DROPPED`] header) and waits for the broker to acknowledge it.
pub async fn send_dead_letter(
    producer: &FutureProducer,
    topic: &str,
    message: &OwnedMessage,
    errors: &[DecodeError],
    with_payload: bool,
) -> Result<(), rdkafka::error::KafkaError> {
    let mut headers = dead_letter_headers(message, errors);
    let size = message.payload().map_or(0, <[u8]>::len).to_string();
    if !with_payload {
        headers = headers.insert(Header {
            key: PAYLOAD_DROPPED,
            value: Some(size.as_bytes()),
        });
    }
    let mut record: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(topic).headers(headers);
    if let Some(key) = message.key() {
        record = record.key(key);
    }
    if let Some(payload) = message.payload().filter(|_| with_payload) {
        record = record.payload(dead_letter_value(payload).0);
    }
    producer
        .send(record, std::time::Duration::from_secs(30))
        .await
        .map(|_| ())
        .map_err(|(e, _)| e)
}

#[cfg(test)]
mod tests {
    use rdkafka::Timestamp;

    use super::*;

    fn message(payload: Vec<u8>) -> OwnedMessage {
        OwnedMessage::new(
            Some(payload),
            None,
            "samples".into(),
            Timestamp::NotAvailable,
            0,
            1,
            None,
        )
    }

    fn header(headers: &OwnedHeaders, key: &str) -> Option<String> {
        headers
            .iter()
            .find(|h| h.key == key)
            .and_then(|h| h.value)
            .map(|v| String::from_utf8_lossy(v).into_owned())
    }

    #[test]
    fn an_oversized_value_is_cut_so_its_dead_letter_can_be_stored() {
        let big = vec![b'x'; 10 << 20];
        let (value, original) = dead_letter_value(&big);
        assert_eq!(value.len(), MAX_DEAD_LETTER_VALUE_BYTES);
        assert_eq!(original, Some(10 << 20));
        let error = fulcrum_engine::sample::DecodeError::TooLarge {
            size: big.len(),
            limit: fulcrum_engine::sample::MAX_MESSAGE_BYTES,
        };
        let headers = dead_letter_headers(&message(big), &[error]);
        assert_eq!(header(&headers, VALUE_BYTES).as_deref(), Some("10485760"));
        assert_eq!(header(&headers, REASON).as_deref(), Some("too_large"));
        // Control: a value within the limit is kept whole and has no length header.
        let small = vec![b'x'; MAX_DEAD_LETTER_VALUE_BYTES];
        assert_eq!(dead_letter_value(&small), (&small[..], None));
        let headers = dead_letter_headers(&message(small), &[]);
        assert_eq!(header(&headers, VALUE_BYTES), None);
    }
}
