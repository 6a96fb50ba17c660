use super::*;
use crate::manifest::read_documents;

/// The objects `stream_objects` hands over, or `None` when it asks for the fallback.
fn streamed(text: &str) -> Option<Vec<Value>> {
    let mut out = Vec::new();
    let mut push = |v: Value| -> Result<(), ()> {
        out.push(v);
        Ok(())
    };
    match stream_objects(text.as_bytes(), &mut push) {
        Ok(()) => Some(out),
        Err(StreamError::Fallback) => None,
        Err(StreamError::Read(e)) => panic!("read: {e}"),
        Err(StreamError::Item(())) => panic!("refused"),
    }
}

/// What the whole-document parser makes of `text`, minus the null items it keeps.
fn whole(text: &str) -> Vec<Value> {
    read_documents(text)
        .expect("valid YAML")
        .into_iter()
        .map(|d| d.value)
        .filter(|v| !v.is_null())
        .collect()
}

const KUBECTL: &str = r#"apiVersion: v1
items:
- apiVersion: v1
  kind: Node
  metadata:
    labels:
      pool: colocated
    name: n1
  status:
    conditions:
    - status: "True"
      type: Ready
- apiVersion: v1
  kind: Pod
  metadata:
    annotations:
      note: |
        a block scalar

        with a blank line
        - and a dash
    name: p1
    namespace: shop
  spec:
    containers:
    - name: a
    nodeName: n1

# a comment between items
-   apiVersion: v1
    kind: Namespace
    metadata: {name: shop,
      labels: {team: web}}
-
  kind: Pod
  metadata: {name: p2}
kind: List
metadata:
  resourceVersion: ""
"#;

#[test]
fn a_kubectl_list_streams_to_the_same_objects_as_the_whole_parse() {
    let objects = streamed(KUBECTL).expect("streams");
    assert_eq!(objects.len(), 4, "{objects:#?}");
    assert_eq!(objects, whole(KUBECTL));
    assert_eq!(
        objects[1]["metadata"]["annotations"]["note"],
        "a block scalar\n\nwith a blank line\n- and a dash\n"
    );
}

#[test]
fn other_shapes_stream_like_the_whole_parse() {
    let cases = [
        // Indented items, several documents, a single object, flow style, empty documents.
        "kind: List\nitems:\n  - {kind: Node, metadata: {name: a}}\n  - kind: Node\n    metadata:\n      name: b\n---\nkind: Pod\nmetadata: {name: p}\n---\n---\nkind: List\nitems: [{kind: Node, metadata: {name: c}}]\n...\n",
        "apiVersion: v1\nkind: List\nitems: []\n",
        "kind: List\nitems:\n",
        "# only a comment\n",
        "",
        // JSON as kubectl prints it (kind after the items), and a single JSON object.
        "{\n  \"apiVersion\": \"v1\",\n  \"items\": [\n    {\"kind\": \"Node\", \"metadata\": {\"name\": \"a\"}},\n    null,\n    {\"kind\": \"Pod\", \"metadata\": {\"name\": \"p\"}}\n  ],\n  \"kind\": \"List\"\n}\n",
        "{\"kind\": \"Pod\", \"metadata\": {\"name\": \"p\"}, \"items\": {\"a\": 1}}",
        "{\"kind\": \"List\", \"items\": 5}",
    ];
    for text in cases {
        assert_eq!(streamed(text).as_ref(), Some(&whole(text)), "{text}");
    }
}

#[test]
fn shapes_it_cannot_take_apart_fall_back_to_the_whole_parse() {
    let cases = [
        // An alias to an anchor in another item.
        "kind: List\nitems:\n- &n {kind: Node, metadata: {name: a}}\n- *n\n",
        // `items` of something that is not a `List`.
        "kind: PodList\nitems:\n- {kind: Pod, metadata: {name: p}}\n",
        // A document marker followed by content; a directive.
        "--- {kind: Pod}\n",
        "%YAML 1.2\n---\nkind: Pod\n",
        // A line between the top level and the sequence's column.
        "kind: List\nitems:\n  - {kind: Pod}\n x: 1\n",
        // YAML flow style that is not JSON; JSON that is not one object.
        "{kind: Pod, metadata: {name: p}}",
        "[{\"kind\": \"Pod\"}]",
        "{\"kind\": \"Pod\"} {\"kind\": \"Node\"}",
        // A syntax error in an item (the whole parse reports it with its line).
        "kind: List\nitems:\n- kind: Pod\n  metadata: {name: [p}\n",
    ];
    for text in cases {
        assert_eq!(streamed(text), None, "{text}");
    }
    // The control: the same list without the alias streams.
    assert!(streamed("kind: List\nitems:\n- {kind: Node, metadata: {name: a}}\n").is_some());
}

#[test]
fn a_refused_object_stops_the_stream_with_its_error() {
    for text in [
        KUBECTL,
        "{\"kind\": \"List\", \"items\": [{\"kind\": \"Node\"}, {\"kind\": \"Pod\"}]}",
    ] {
        let mut seen = 0;
        let mut refuse_second = |_: Value| -> Result<(), usize> {
            seen += 1;
            if seen == 2 { Err(seen) } else { Ok(()) }
        };
        match stream_objects(text.as_bytes(), &mut refuse_second) {
            Err(StreamError::Item(2)) => {}
            other => panic!("{text}: {:?}", other.err()),
        }
        assert_eq!(seen, 2, "nothing is handed over after the refusal");
    }
}
