//! Bounded under hostile input (issue 14, item 3): floods of samples for unknown pods and
//! nodes, 10 MB messages, deep JSON, megabyte names and full-size batches. Memory is
//! measured with the counting allocator ([`crate::alloc`]), always against a control that
//! shows the measurement would see growth.

use std::borrow::Cow;
use std::collections::BTreeMap;

use fulcrum::feed::dlq::dead_letter_headers;
use fulcrum_engine::cluster::{NodeInfo, Owner, PodInfo, Resources};
use fulcrum_engine::sample::{
    DecodeError, DecodeOptions, MAX_MESSAGE_BYTES, Metric, PodRef, Sample, decode,
};
use fulcrum_engine::{Engine, EngineConfig};
use rdkafka::Timestamp;
use rdkafka::message::{Headers, OwnedMessage};

use crate::alloc::{live_bytes, peak_bytes, reset_peak};

const T0: i64 = 1_764_151_200_000;
const OPTIONS: DecodeOptions = DecodeOptions {
    now_ms: T0 + 86_400_000,
};
const POLICY: &str = r#"
apiVersion: fulcrum.dev/v1alpha1
kind: InterferencePolicy
metadata: {name: protect}
spec:
  mode: Enforce
  victims: {podSelector: {matchLabels: {class: online}}}
  candidates: [{name: batch, podSelector: {matchLabels: {class: batch}}, action: Evict}]
  triggers: [{name: p99, metric: latency_p99_ms, above: 100, sustainedFor: 30s}]
  attribution: {method: Correlation, metrics: [mem_bw], window: 2m}
"#;

fn pod(name: &str, node: &str, class: &str) -> PodInfo {
    PodInfo {
        namespace: "shop".into(),
        name: name.into(),
        uid: format!("uid-{name}").into(),
        node_name: Some(node.into()),
        labels: BTreeMap::from([("class".to_string(), class.to_string())]).into(),
        owner: Some(Owner {
            kind: "StatefulSet".into(),
            name: "set".into(),
        }),
        workload: "shop/StatefulSet/set".into(),
        running: true,
        requests: Resources {
            cpu_millis: 100,
            memory_bytes: 1 << 20,
            ..Resources::default()
        },
        ..PodInfo::default()
    }
}

/// Two nodes with a victim and a batch pod each.
fn engine() -> Engine {
    let mut engine = Engine::new(EngineConfig::default());
    for n in ["n0", "n1"] {
        engine.upsert_node(NodeInfo {
            name: n.into(),
            ready: true,
            ..NodeInfo::default()
        });
        engine.upsert_pod(pod(&format!("web-{n}"), n, "online"));
        engine.upsert_pod(pod(&format!("etl-{n}"), n, "batch"));
    }
    let doc: serde_json::Value = serde_yaml_ng::from_str(POLICY).unwrap();
    let policy = fulcrum_policies::document::check_document(&doc).unwrap();
    assert!(engine.set_policies(&[policy]).is_empty());
    engine
}

fn sample<'a>(ts: i64, node: &'a str, pod: Option<&'a str>) -> Sample<'a> {
    Sample {
        ts_ms: ts,
        node: Cow::Borrowed(node),
        pod: pod.map(|name| PodRef {
            namespace: Cow::Borrowed("shop"),
            name: Cow::Borrowed(name),
            uid: None,
        }),
        container: None,
        metrics: [("latency_p99_ms", 50.0), ("mem_bw", 1.0e9)]
            .iter()
            .map(|&(name, value)| Metric {
                name: Cow::Borrowed(name),
                value,
            })
            .collect(),
    }
}

/// Offers one tick of valid samples (both nodes, all pods) at `ts`.
fn valid_tick(engine: &mut Engine, ts: i64, events: &mut Vec<fulcrum_engine::Event>) -> u64 {
    let mut n = 0;
    for node in ["n0", "n1"] {
        let web = format!("web-{node}");
        let etl = format!("etl-{node}");
        for pod in [Some(web.as_str()), Some(etl.as_str())] {
            engine.offer(&sample(ts, node, pod));
            n += 1;
        }
    }
    engine.advance_auto(events);
    n
}

#[test]
fn a_flood_of_samples_for_a_million_unknown_pods_and_nodes_keeps_no_state() {
    const FLOOD: u64 = 1_000_000;
    let mut engine = engine();
    let mut events = Vec::new();
    // Warm up: every series and track the valid samples need exists before measuring.
    let mut valid = 0;
    let mut ts = T0;
    for _ in 0..60 {
        valid += valid_tick(&mut engine, ts, &mut events);
        ts += 10_000;
    }
    let before = live_bytes();
    for i in 0..FLOOD {
        let name = format!("ghost-{i}");
        let s = if i % 2 == 0 {
            sample(ts, &name, None)
        } else {
            sample(ts, "n0", Some(&name))
        };
        engine.offer(&s);
        if i % 10_000 == 0 {
            // Valid samples keep arriving during the flood.
            valid += valid_tick(&mut engine, ts, &mut events);
            ts += 10_000;
        }
    }
    engine.flush(&mut events);
    let grown = live_bytes() - before;
    let stats = engine.stats().clone();
    assert_eq!(stats.unknown_node, FLOOD / 2);
    assert_eq!(stats.unknown_pod, FLOOD / 2);
    assert_eq!(
        stats.applied, valid,
        "every valid sample around the flood is applied"
    );
    assert!(
        grown < 64 << 10,
        "the flood grew engine state by {grown} bytes"
    );
    eprintln!("figure: {FLOOD} samples for unknown pods/nodes grew engine state by {grown} bytes");

    // Control: the same meter sees state grow with what the cluster view tracks.
    let before = live_bytes();
    for i in 0..1_000 {
        engine.upsert_pod(pod(&format!("new-{i}"), "n1", "batch"));
    }
    let grown = live_bytes() - before;
    assert!(
        grown > 100_000,
        "1000 new pods grew state by only {grown} bytes"
    );
    eprintln!("figure: control: 1000 new pods grew engine state by {grown} bytes");
}

#[test]
fn a_ten_megabyte_message_is_rejected_without_being_parsed() {
    let mut message = br#"{"schema":"fulcrum.metrics/v1","samples":["#.to_vec();
    message.resize(10 << 20, b' ');
    reset_peak();
    let start = live_bytes();
    let err = decode(&message, &OPTIONS).unwrap_err();
    assert_eq!(err.reason(), "too_large");
    assert_eq!(
        err.to_string(),
        format!("message is {} bytes, over the 1048576-byte limit", 10 << 20)
    );
    let used = peak_bytes() - start;
    assert!(used < 4096, "rejecting it allocated {used} bytes");
    // Control: one byte under the limit is parsed (and fails only as JSON).
    message.truncate(MAX_MESSAGE_BYTES);
    assert_eq!(decode(&message, &OPTIONS).unwrap_err().reason(), "not_json");
}

#[test]
fn deeply_nested_json_is_rejected_or_skipped_without_exhausting_the_stack() {
    let depth = 100_000;
    let deep = |open: &str, close: &str| format!("{}1{}", open.repeat(depth), close.repeat(depth));
    let (list, map) = (deep("[", "]"), deep("{\"a\":", "}"));
    let sample = |field: &str, value: &str| {
        format!(
            r#"{{"schema":"fulcrum.metrics/v1","ts":{T0},"node":"n0","metrics":{{"cpi":1}},"{field}":{value}}}"#
        )
    };
    for (what, text, expected) in [
        ("a list as the message", list.clone(), Err("wrong_type")),
        // The deep value sits in an unknown field `a`, so `schema` is missing.
        (
            "an object as the message",
            map.clone(),
            Err("missing_field"),
        ),
        ("a list in pod", sample("pod", &list), Err("wrong_type")),
        (
            "an object in pod",
            sample("pod", &map),
            Err("missing_field"),
        ),
        (
            "a list in samples",
            format!(r#"{{"schema":"fulcrum.metrics/v1","samples":[{list}]}}"#),
            Ok((0, vec!["wrong_type"])),
        ),
        // Unknown fields are skipped without recursion, at any depth.
        (
            "a list in an unknown field",
            sample("x", &list),
            Ok((1, vec![])),
        ),
        (
            "an object in an unknown field",
            sample("x", &map),
            Ok((1, vec![])),
        ),
    ] {
        assert!(text.len() <= MAX_MESSAGE_BYTES, "{what}");
        let got = decode(text.as_bytes(), &OPTIONS)
            .map(|d| {
                (
                    d.samples.len(),
                    d.rejected.iter().map(DecodeError::reason).collect(),
                )
            })
            .map_err(|e| e.reason());
        assert_eq!(got, expected, "{what}");
    }
}

/// A sample with `field` set to `value` (a JSON string of `len` bytes of `a`).
fn with_long(field: &str, len: usize) -> String {
    let long = "a".repeat(len);
    let (node, pod, container, metric, ts) = match field {
        "node" => (long.as_str(), "web-n0", "app", "cpi", format!("{T0}")),
        "pod.name" => ("n0", long.as_str(), "app", "cpi", format!("{T0}")),
        "container" => ("n0", "web-n0", long.as_str(), "cpi", format!("{T0}")),
        "metric" => ("n0", "web-n0", "app", long.as_str(), format!("{T0}")),
        _ => ("n0", "web-n0", "app", "cpi", format!("\"{long}\"")),
    };
    format!(
        r#"{{"ts":{ts},"node":"{node}","pod":{{"namespace":"shop","name":"{pod}"}},"container":"{container}","metrics":{{"{metric}":1}}}}"#
    )
}

fn batch(samples: &[String]) -> Vec<u8> {
    format!(
        r#"{{"schema":"fulcrum.metrics/v1","samples":[{}]}}"#,
        samples.join(",")
    )
    .into_bytes()
}

fn dead_letter_header_bytes(payload: &[u8], errors: &[DecodeError]) -> usize {
    let message = OwnedMessage::new(
        Some(payload.to_vec()),
        Some(b"n0".to_vec()),
        "samples".into(),
        Timestamp::CreateTime(T0),
        0,
        7,
        None,
    );
    let headers = dead_letter_headers(&message, errors);
    headers
        .iter()
        .map(|h| h.key.len() + h.value.map_or(0, <[u8]>::len))
        .sum()
}

#[test]
fn megabyte_names_are_rejected_alone_with_a_short_reason() {
    let valid = with_long("metric", 3);
    for (field, reason) in [
        ("node", "bad_name"),
        ("pod.name", "bad_name"),
        ("container", "bad_name"),
        ("metric", "bad_metric_name"),
        ("ts", "bad_timestamp"),
    ] {
        let message = batch(&[valid.clone(), with_long(field, 1_000_000), valid.clone()]);
        assert!(message.len() <= MAX_MESSAGE_BYTES);
        let decoded = decode(&message, &OPTIONS).unwrap();
        assert_eq!(
            decoded.samples.len(),
            2,
            "{field}: the valid samples are kept"
        );
        assert_eq!(decoded.rejected.len(), 1);
        let err = &decoded.rejected[0];
        assert_eq!(err.reason(), reason, "{field}");
        let text = err.to_string();
        assert!(text.starts_with("samples[1]."), "{field}: {}", &text[..80]);
        assert!(text.len() < 600, "{field}: a {}-byte reason", text.len());
        assert!(text.contains("(1000000 bytes)"), "{field}: {text}");
        // The dead letter is the original plus small headers, so it fits where it came from.
        let headers = dead_letter_header_bytes(&message, &decoded.rejected);
        assert!(
            headers < 2048,
            "{field}: {headers} bytes of dead-letter headers"
        );
    }
    // Control: the path of a valid 128-byte metric name is shown whole.
    let a128 = "a".repeat(128);
    let item =
        with_long("metric", 128).replace(&format!("\"{a128}\":1"), &format!("\"{a128}\":\"x\""));
    let err = decode(&batch(&[item]), &OPTIONS)
        .unwrap()
        .rejected
        .remove(0);
    assert_eq!(
        err.to_string(),
        format!("samples[0].metrics.{a128}: must be a finite number, got a string")
    );
    // Control: a name just over the quoting limit is cut; a short one is quoted whole.
    let message = batch(&[with_long("node", 300)]);
    let err = decode(&message, &OPTIONS).unwrap().rejected.remove(0);
    assert_eq!(
        err.to_string(),
        format!(r#"samples[0].node: "{a128}"… (300 bytes) is not a valid Kubernetes name"#)
    );
    let message = batch(&[with_long("node", 10).replace("aaaaaaaaaa", "Node_A17")]);
    let err = decode(&message, &OPTIONS).unwrap().rejected.remove(0);
    assert_eq!(
        err.to_string(),
        r#"samples[0].node: "Node_A17" is not a valid Kubernetes name"#
    );
}

/// The most samples a 1 MiB batch can hold: the smallest valid sample, repeated.
fn full_batch(bad_every: usize) -> (Vec<u8>, usize) {
    let small = format!(r#"{{"ts":{T0},"node":"n","metrics":{{"a":0}}}}"#);
    let bad = format!(r#"{{"ts":{T0},"node":"N","metrics":{{"a":0}}}}"#);
    let mut items = Vec::new();
    let mut size = 60;
    while size + small.len() + 1 < MAX_MESSAGE_BYTES {
        let i = items.len();
        items.push(if bad_every > 0 && i % bad_every == 1 {
            bad.clone()
        } else {
            small.clone()
        });
        size += small.len() + 1;
    }
    let n = items.len();
    (batch(&items), n)
}

#[test]
fn a_full_size_batch_decodes_in_memory_bounded_by_the_message_size() {
    let (message, n) = full_batch(0);
    assert!(message.len() <= MAX_MESSAGE_BYTES);
    reset_peak();
    let start = live_bytes();
    let decoded = decode(&message, &OPTIONS).unwrap();
    let peak = peak_bytes() - start;
    assert_eq!(decoded.samples.len(), n);
    assert!(n > 20_000, "{n} samples");
    // Documented bound (docs/events.md, Limits): at most 16 bytes of memory per message byte.
    let per_byte = peak as f64 / message.len() as f64;
    assert!(
        per_byte < 16.0,
        "{per_byte:.1} bytes per message byte ({peak} bytes)"
    );
    eprintln!(
        "figure: a {}-byte batch of {n} samples peaks at {peak} bytes ({per_byte:.1} per byte)",
        message.len()
    );
    drop(decoded);

    // Every second sample bad: each rejected alone, the rest kept, the headers stay small.
    let (message, n) = full_batch(2);
    let decoded = decode(&message, &OPTIONS).unwrap();
    assert_eq!(decoded.samples.len() + decoded.rejected.len(), n);
    assert_eq!(decoded.rejected.len(), n / 2);
    assert!(decoded.rejected.iter().all(|e| e.reason() == "bad_name"));
    let headers = dead_letter_header_bytes(&message, &decoded.rejected);
    assert!(headers < 4096, "{headers} bytes of dead-letter headers");
}
