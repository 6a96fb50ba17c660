//! Decoder tests: every accepted form and every rejection reason.

use std::borrow::Cow;

use proptest::prelude::*;

use super::*;

const NOW: i64 = 1_764_151_200_000; // 2025-11-26T10:00:00Z
const OPTS: DecodeOptions = DecodeOptions { now_ms: NOW };

fn ok(text: &str) -> Decoded<'_> {
    decode(text.as_bytes(), &OPTS).unwrap_or_else(|e| panic!("{text}: {e}"))
}

fn err(text: &str) -> DecodeError {
    match decode(text.as_bytes(), &OPTS) {
        Ok(d) => panic!("{text} decoded to {d:?}"),
        Err(e) => e,
    }
}

/// A valid single sample with `field` replaced by `value` (or removed when `value` is None).
fn sample_with(field: &str, value: Option<&str>) -> String {
    let mut fields = vec![
        ("schema", r#""fulcrum.metrics/v1""#.to_owned()),
        ("ts", NOW.to_string()),
        ("node", r#""node-a17""#.to_owned()),
        (
            "pod",
            r#"{"namespace":"shop","name":"cart-7d9f8-x2k4","uid":"3f6c"}"#.to_owned(),
        ),
        ("container", r#""app""#.to_owned()),
        ("metrics", r#"{"cpi":1.35,"latency_p99_ms":42}"#.to_owned()),
    ];
    fields.retain(|(k, _)| *k != field);
    if let Some(v) = value {
        fields.push((field, v.to_owned()));
    }
    let body: Vec<String> = fields.iter().map(|(k, v)| format!("\"{k}\":{v}")).collect();
    format!("{{{}}}", body.join(","))
}

fn field_error(e: &DecodeError) -> (&str, &Problem) {
    match e {
        DecodeError::Field { field, problem } => (field, problem),
        other => panic!("expected a field error, got {other:?}"),
    }
}

#[test]
fn decodes_a_full_single_sample_borrowing_strings() {
    let text = sample_with("", None);
    let d = ok(&text);
    assert!(d.rejected.is_empty());
    let [s] = d.samples.as_slice() else {
        panic!("one sample expected")
    };
    assert_eq!(s.ts_ms, NOW);
    assert!(matches!(s.node, Cow::Borrowed("node-a17")));
    let pod = s.pod.as_ref().unwrap();
    assert_eq!((&*pod.namespace, &*pod.name), ("shop", "cart-7d9f8-x2k4"));
    assert_eq!(pod.uid.as_deref(), Some("3f6c"));
    assert_eq!(s.container.as_deref(), Some("app"));
    assert_eq!(s.metric("cpi"), Some(1.35));
    assert_eq!(s.metric("latency_p99_ms"), Some(42.0));
    assert!(!s.metrics.spilled(), "two metrics must stay inline");
}

#[test]
fn node_level_samples_have_no_pod() {
    for text in [sample_with("pod", None), sample_with("pod", Some("null"))] {
        let d = ok(&text);
        assert_eq!(d.samples[0].pod, None, "{text}");
    }
}

#[test]
fn timestamps_as_rfc3339_or_integer_valued_numbers() {
    let rfc = sample_with("ts", Some(r#""2025-11-26T10:00:00.123Z""#));
    assert_eq!(ok(&rfc).samples[0].ts_ms, NOW + 123);
    let offset = sample_with("ts", Some(r#""2025-11-26T11:00:00+01:00""#));
    assert_eq!(ok(&offset).samples[0].ts_ms, NOW);
    let float = sample_with("ts", Some("1764151200000.0"));
    assert_eq!(ok(&float).samples[0].ts_ms, NOW);
}

#[test]
fn escaped_strings_are_unescaped() {
    let text = sample_with("node", Some(r#""node\u002da17""#));
    let d = ok(&text);
    assert_eq!(d.samples[0].node, "node-a17");
    assert!(matches!(d.samples[0].node, Cow::Owned(_)));
}

#[test]
fn unknown_fields_are_ignored() {
    let text = sample_with("agent", Some(r#"{"version":[1,2,{"x":null}]}"#));
    assert_eq!(ok(&text).samples.len(), 1);
}

#[test]
fn a_batch_keeps_good_samples_and_rejects_bad_ones_by_index() {
    let text = format!(
        r#"{{"schema":"fulcrum.metrics/v1","samples":[
            {{"ts":{NOW},"node":"n1","metrics":{{"cpi":1.0}}}},
            {{"ts":{NOW},"node":"n1","metrics":{{"cpi":"high"}}}},
            {{"schema":"fulcrum.metrics/v1","ts":{NOW},"node":"n2","pod":{{"namespace":"a","name":"b"}},"metrics":{{"qps":10}}}},
            7
        ]}}"#
    );
    let d = ok(&text);
    assert_eq!(d.samples.len(), 2);
    assert_eq!(d.samples[1].node, "n2");
    let rejected: Vec<String> = d.rejected.iter().map(ToString::to_string).collect();
    assert_eq!(
        rejected,
        [
            "samples[1].metrics.cpi: must be a finite number, got a string",
            "samples[3]: must be a sample object, got a number",
        ]
    );
}

#[test]
fn an_empty_batch_is_valid_and_empty() {
    let d = ok(r#"{"schema":"fulcrum.metrics/v1","samples":[]}"#);
    assert!(d.samples.is_empty() && d.rejected.is_empty());
}

#[test]
fn whole_message_rejections() {
    let big = vec![b' '; MAX_MESSAGE_BYTES + 1];
    assert_eq!(
        decode(&big, &OPTS).unwrap_err(),
        DecodeError::TooLarge {
            size: MAX_MESSAGE_BYTES + 1,
            limit: MAX_MESSAGE_BYTES
        }
    );

    let mut bytes = sample_with("", None).into_bytes();
    bytes[30] = 0xff;
    assert_eq!(
        decode(&bytes, &OPTS).unwrap_err(),
        DecodeError::NotUtf8 {
            offset: 30,
            byte: 0xff
        }
    );

    let e = err(r#"{"schema":"fulcrum.metrics/v1", "ts": }"#);
    assert!(matches!(e, DecodeError::Syntax { offset: 38, .. }), "{e:?}");

    let e = err(r#"{"schema":"fulcrum.metrics/v1","metrics":{"cpi":NaN}}"#);
    assert_eq!(e, DecodeError::NonFiniteNumber { offset: 48 });
    assert_eq!(e.reason(), "non_finite");
    let e = err(r#"{"schema":"fulcrum.metrics/v1","metrics":{"cpi":-Infinity}}"#);
    assert_eq!(e, DecodeError::NonFiniteNumber { offset: 48 });
    let e = err(r#"{"schema":"fulcrum.metrics/v1","metrics":{"cpi":1e400}}"#);
    assert_eq!(e.reason(), "non_finite", "{e:?}");

    let e = err(&format!("{} trailing", sample_with("", None)));
    assert_eq!(e.reason(), "not_json");

    let e = err(r#"[{"a":1}]"#);
    assert_eq!(
        e.to_string(),
        "(message): must be a JSON object, got a list"
    );
    assert_eq!(err("null").reason(), "wrong_type");
}

#[test]
fn every_field_rejection_names_its_field() {
    let many_metrics = {
        let body: Vec<String> = (0..=MAX_METRICS_PER_SAMPLE)
            .map(|i| format!("\"m{i}\":1"))
            .collect();
        format!("{{{}}}", body.join(","))
    };
    let cases: Vec<(String, &str, &str)> = vec![
        (sample_with("schema", None), "schema", "missing_field"),
        (
            sample_with("schema", Some(r#""fulcrum.metrics/v2""#)),
            "schema",
            "unknown_schema",
        ),
        (sample_with("schema", Some("1")), "schema", "wrong_type"),
        (sample_with("ts", None), "ts", "missing_field"),
        (sample_with("ts", Some("1764151200")), "ts", "ts_too_old"),
        (
            sample_with("ts", Some(&(NOW + MAX_FUTURE_MS + 1).to_string())),
            "ts",
            "ts_in_future",
        ),
        (
            sample_with("ts", Some(r#""yesterday""#)),
            "ts",
            "bad_timestamp",
        ),
        (
            sample_with("ts", Some("1764151200000.5")),
            "ts",
            "wrong_type",
        ),
        (sample_with("ts", Some("1e17")), "ts", "ts_in_future"),
        (sample_with("ts", Some("true")), "ts", "wrong_type"),
        (sample_with("node", None), "node", "missing_field"),
        (sample_with("node", Some(r#""Node_A""#)), "node", "bad_name"),
        (sample_with("node", Some("[]")), "node", "wrong_type"),
        (
            sample_with("pod", Some(r#""shop/cart""#)),
            "pod",
            "wrong_type",
        ),
        (
            sample_with("pod", Some(r#"{"name":"cart"}"#)),
            "pod.namespace",
            "missing_field",
        ),
        (
            sample_with("pod", Some(r#"{"namespace":"shop"}"#)),
            "pod.name",
            "missing_field",
        ),
        (
            sample_with("pod", Some(r#"{"namespace":"Shop","name":"c"}"#)),
            "pod.namespace",
            "bad_name",
        ),
        (
            sample_with("pod", Some(r#"{"namespace":"s","name":"c","uid":5}"#)),
            "pod.uid",
            "wrong_type",
        ),
        (
            sample_with("container", Some(r#""App""#)),
            "container",
            "bad_name",
        ),
        (sample_with("metrics", None), "metrics", "missing_field"),
        (sample_with("metrics", Some("{}")), "metrics", "no_metrics"),
        (sample_with("metrics", Some("[1]")), "metrics", "wrong_type"),
        (
            sample_with("metrics", Some(r#"{"cpi":"1.3"}"#)),
            "metrics.cpi",
            "wrong_type",
        ),
        (
            sample_with("metrics", Some(r#"{"cpi":null}"#)),
            "metrics.cpi",
            "wrong_type",
        ),
        (
            sample_with("metrics", Some(r#"{"CPI":1}"#)),
            "metrics.CPI",
            "bad_metric_name",
        ),
        (
            sample_with("metrics", Some(r#"{"cpi-x":1}"#)),
            "metrics.cpi-x",
            "bad_metric_name",
        ),
        (
            sample_with("metrics", Some(r#"{"cpi":1,"cpi":2}"#)),
            "metrics.cpi",
            "duplicate_field",
        ),
        (
            sample_with("metrics", Some(&many_metrics)),
            "metrics",
            "too_many_metrics",
        ),
        (
            format!(
                "{},\"ts\":{NOW}}}",
                sample_with("", None).strip_suffix('}').unwrap()
            ),
            "ts",
            "duplicate_field",
        ),
        (
            r#"{"schema":"fulcrum.metrics/v1","samples":[],"node":"n"}"#.to_owned(),
            "samples",
            "mixed_batch",
        ),
        (
            r#"{"schema":"fulcrum.metrics/v1","samples":{}}"#.to_owned(),
            "samples",
            "wrong_type",
        ),
    ];
    for (text, field, reason) in cases {
        let e = err(&text);
        let (got_field, _) = field_error(&e);
        assert_eq!((got_field, e.reason()), (field, reason), "{text} -> {e}");
        assert!(e.to_string().starts_with(&format!("{field}: ")), "{e}");
    }
}

#[test]
fn messages_explain_the_problem() {
    let e = err(&sample_with("ts", Some("1764151200")));
    assert_eq!(
        e.to_string(),
        "ts: 1764151200 ms is before 2000-01-01 (is it in seconds?)"
    );
    let e = err(&sample_with("metrics", Some(r#"{"cpi":"1.3"}"#)));
    assert_eq!(
        e.to_string(),
        "metrics.cpi: must be a finite number, got a string"
    );
}

#[test]
fn metrics_beyond_the_inline_capacity_spill_without_loss() {
    let body: Vec<String> = (0..20).map(|i| format!("\"m{i}\":{i}")).collect();
    let text = sample_with("metrics", Some(&format!("{{{}}}", body.join(","))));
    let d = ok(&text);
    assert_eq!(d.samples[0].metrics.len(), 20);
    assert_eq!(d.samples[0].metric("m19"), Some(19.0));
}

#[test]
fn into_owned_keeps_every_field() {
    let text = sample_with("", None);
    let borrowed = ok(&text).samples.remove(0);
    let expected = format!("{borrowed:?}");
    let owned = borrowed.into_owned();
    drop(text);
    assert_eq!(format!("{owned:?}"), expected);
    assert_eq!(owned.node, "node-a17");
}

/// (ts, node, optional (namespace, pod name), metrics) of a valid sample.
type SampleParts = (i64, String, Option<(String, String)>, Vec<(String, f64)>);

/// A generated value made valid for its name: names that document a fraction (`psi_*`,
/// `*_util`, `*_ratio`) get one in 0..1 (any other value is rightly rejected).
fn valid_value((name, value): (String, f64)) -> (String, f64) {
    if range::is_fraction(&name) {
        let fraction = value.abs() / 1e12;
        (name, fraction)
    } else {
        (name, value)
    }
}

fn arb_sample() -> impl Strategy<Value = SampleParts> {
    (
        MIN_TS_MS..NOW,
        "[a-z][a-z0-9-]{0,20}[a-z0-9]",
        proptest::option::of(("[a-z][a-z0-9]{0,10}", "[a-z][a-z0-9-]{0,20}[a-z0-9]")),
        proptest::collection::btree_map("[a-z][a-z0-9_]{0,12}", -1e12f64..1e12, 1..12)
            .prop_map(|m| m.into_iter().map(valid_value).collect::<Vec<_>>()),
    )
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        let _ = decode(&bytes, &OPTS);
    }

    #[test]
    fn json_with_random_shape_never_panics(value in any_json()) {
        let text = serde_json::to_string(&value).unwrap();
        let _ = decode(text.as_bytes(), &OPTS);
    }

    #[test]
    fn valid_samples_round_trip((ts, node, pod, metrics) in arb_sample()) {
        let mut object = serde_json::json!({"schema": SCHEMA, "ts": ts, "node": node});
        if let Some((ns, name)) = &pod {
            object["pod"] = serde_json::json!({"namespace": ns, "name": name});
        }
        object["metrics"] = metrics.iter().map(|(k, v)| (k.clone(), serde_json::json!(v))).collect();
        let text = object.to_string();
        let d = decode(text.as_bytes(), &OPTS).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let s = &d.samples[0];
        prop_assert_eq!(s.ts_ms, ts);
        prop_assert_eq!(&*s.node, node.as_str());
        prop_assert_eq!(s.pod.as_ref().map(|p| (p.namespace.to_string(), p.name.to_string())), pod);
        // serde_json's fast float parser may differ from the shortest representation by
        // one ULP (the `float_roundtrip` feature is off on purpose: the hot path does not
        // need the last bit of a monitoring value).
        prop_assert_eq!(s.metrics.len(), metrics.len());
        for (m, (name, value)) in s.metrics.iter().zip(&metrics) {
            prop_assert_eq!(&*m.name, name.as_str());
            prop_assert!((m.value - value).abs() <= value.abs() * 1e-15, "{} vs {}", m.value, value);
        }
    }
}

fn any_json() -> impl Strategy<Value = serde_json::Value> {
    use serde_json::Value;
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        (-1e20f64..1e20).prop_map(Value::from),
        prop_oneof![
            Just("schema".to_owned()),
            Just(SCHEMA.to_owned()),
            Just("ts".to_owned()),
            "[a-z_]{0,8}"
        ]
        .prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 64, 8, |inner| {
        let keys = prop_oneof![
            Just("schema".to_owned()),
            Just("ts".to_owned()),
            Just("node".to_owned()),
            Just("pod".to_owned()),
            Just("metrics".to_owned()),
            Just("samples".to_owned()),
            Just("name".to_owned()),
            Just("namespace".to_owned()),
            "[a-z]{1,6}",
        ];
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            proptest::collection::btree_map(keys, inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

#[test]
fn values_outside_a_documented_range_are_rejected_with_a_hint() {
    // cpu_util sent as a percentage: every node would fire for days.
    let e = err(&sample_with("metrics", Some(r#"{"cpu_util":87.5}"#)));
    let (field, problem) = field_error(&e);
    assert_eq!(field, "metrics.cpu_util");
    assert_eq!(e.reason(), "out_of_range");
    assert!(matches!(problem, Problem::OutOfRange { value, .. } if *value == 87.5));
    assert!(e.to_string().contains("percentage"), "{e}");
    let e = err(&sample_with("metrics", Some(r#"{"psi_mem_some":-0.2}"#)));
    assert_eq!(e.reason(), "out_of_range");
    assert!(e.to_string().contains("negative"), "{e}");
    let e = err(&sample_with(
        "metrics",
        Some(r#"{"cpu_throttled_ratio":4096}"#),
    ));
    assert!(e.to_string().contains("exceed 1"), "{e}");
    // Fractions at the edges, a small overshoot, and unbounded metrics pass.
    ok(&sample_with(
        "metrics",
        Some(r#"{"cpu_util":0,"mem_bw_util":1.02,"psi_io_some":1,"latency_p99_ms":12000}"#),
    ));
}

#[test]
fn absurd_magnitudes_are_rejected() {
    let e = err(&sample_with("metrics", Some(r#"{"cpi":1.5e308}"#)));
    assert_eq!(field_error(&e).0, "metrics.cpi");
    assert_eq!(e.reason(), "absurd_magnitude");
    let e = err(&sample_with(
        "metrics",
        Some(r#"{"mem_bw_bytes_per_sec":-1e300}"#),
    ));
    assert_eq!(e.reason(), "absurd_magnitude");
    ok(&sample_with("metrics", Some(r#"{"mem_usage_bytes":1e15}"#)));
}

#[test]
fn one_out_of_range_member_of_a_batch_is_rejected_alone() {
    let text = format!(
        r#"{{"schema":"fulcrum.metrics/v1","samples":[{{"ts":{NOW},"node":"n1","metrics":{{"cpu_util":0.5}}}},{{"ts":{NOW},"node":"n2","metrics":{{"cpu_util":50}}}}]}}"#
    );
    let d = ok(&text);
    assert_eq!(d.samples.len(), 1);
    assert_eq!(d.rejected.len(), 1);
    assert_eq!(d.rejected[0].field(), Some("samples[1].metrics.cpu_util"));
}
