//! Streaming the objects of a cluster snapshot file (`kubectl get nodes,pods,pdb,namespaces
//! -A -o yaml` or `-o json`) one at a time, without holding the file or a tree of it.
//!
//! - **YAML**: the file is read line by line. The items of a top-level block sequence
//!   `items:` (as kubectl prints a `List`) are cut at their `-` lines and parsed one item
//!   at a time; every other document (a single object, a `List` written in flow style) is
//!   parsed whole, one document at a time.
//! - **JSON**: the file is parsed from the reader; the elements of the top-level object's
//!   `items` array are handed over one at a time.
//!
//! A file this reader cannot take apart exactly as a YAML parser would (an item that does
//! not parse on its own, e.g. one using an anchor defined in another item; a document with
//! `items` whose `kind` is not `List`; a directive or a document marker followed by
//! content; JSON that is not one object) makes it answer [`StreamError::Fallback`]: the
//! caller then loads the file with the whole-document parser ([`crate::manifest`]), which
//! also gives the parser's error message with its line.

use std::io::BufRead;

use serde::Deserialize;
use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

/// Why streaming a file stopped.
#[derive(Debug)]
pub enum StreamError<E> {
    /// The file could not be read.
    Read(std::io::Error),
    /// The file is not in a shape this reader takes apart: load it with the
    /// whole-document parser instead (it also reports syntax errors with their line).
    Fallback,
    /// The callback refused an object.
    Item(E),
}

/// Calls `on_object` with every object of the snapshot read from `reader`, in file order:
/// the items of a `kind: List` one by one, other documents whole (empty documents are
/// skipped).
pub fn stream_objects<R: BufRead, E>(
    mut reader: R,
    on_object: &mut dyn FnMut(Value) -> Result<(), E>,
) -> Result<(), StreamError<E>> {
    let first = loop {
        let buf = reader.fill_buf().map_err(StreamError::Read)?;
        match buf.iter().position(|b| !b.is_ascii_whitespace()) {
            Some(i) => break Some(buf[i]),
            None if buf.is_empty() => break None,
            None => {
                let n = buf.len();
                reader.consume(n);
            }
        }
    };
    match first {
        None => Ok(()),
        Some(b'{') => stream_json(reader, on_object),
        Some(b'[') => Err(StreamError::Fallback),
        Some(_) => YamlSplitter::new(on_object).run(reader),
    }
}

fn stream_json<R: BufRead, E>(
    reader: R,
    on_object: &mut dyn FnMut(Value) -> Result<(), E>,
) -> Result<(), StreamError<E>> {
    let mut de = serde_json::Deserializer::from_reader(reader);
    let mut failed = None;
    let top = TopLevel {
        on_object,
        failed: &mut failed,
    };
    let parsed = top.deserialize(&mut de).and_then(|t| de.end().map(|()| t));
    if let Some(e) = failed {
        return Err(StreamError::Item(e));
    }
    match parsed {
        Ok(Top::Streamed) => Ok(()),
        Ok(Top::Whole(map)) => {
            let value = Value::Object(map);
            on_object(value).map_err(StreamError::Item)
        }
        Ok(Top::NotAList) => Err(StreamError::Fallback),
        Err(e) if e.is_io() => Err(StreamError::Read(std::io::Error::other(e))),
        Err(_) => Err(StreamError::Fallback),
    }
}

/// What the top-level JSON object turned out to be.
enum Top {
    /// A `List` whose items were handed over.
    Streamed,
    /// Any other object (no `items` array): handed over whole by the caller.
    Whole(Map<String, Value>),
    /// An `items` array was handed over but `kind` is not `List`.
    NotAList,
}

struct TopLevel<'a, E> {
    on_object: &'a mut dyn FnMut(Value) -> Result<(), E>,
    failed: &'a mut Option<E>,
}

impl<'de, E> DeserializeSeed<'de> for TopLevel<'_, E> {
    type Value = Top;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Top, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de, E> Visitor<'de> for TopLevel<'_, E> {
    type Value = Top;
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Top, A::Error> {
        let mut rest = Map::new();
        let mut streamed = false;
        while let Some(key) = map.next_key::<String>()? {
            if key == "items" && !streamed {
                let items = map.next_value_seed(Items {
                    on_object: &mut *self.on_object,
                    failed: &mut *self.failed,
                })?;
                match items {
                    Some(value) => {
                        rest.insert(key, value);
                    }
                    None => streamed = true,
                }
            } else {
                let value = map.next_value::<Value>()?;
                rest.insert(key, value);
            }
        }
        let list = rest.get("kind").and_then(Value::as_str) == Some("List");
        Ok(match (streamed, list) {
            (true, true) => Top::Streamed,
            (true, false) => Top::NotAList,
            (false, _) => Top::Whole(rest),
        })
    }
}

/// The value of `items`: an array is handed over element by element (`None`); anything
/// else is kept as a value.
struct Items<'a, E> {
    on_object: &'a mut dyn FnMut(Value) -> Result<(), E>,
    failed: &'a mut Option<E>,
}

impl<'de, E> DeserializeSeed<'de> for Items<'_, E> {
    type Value = Option<Value>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Option<Value>, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de, E> Visitor<'de> for Items<'_, E> {
    type Value = Option<Value>;
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Option<Value>, A::Error> {
        while let Some(item) = seq.next_element::<Value>()? {
            if item.is_null() {
                continue;
            }
            if let Err(e) = (self.on_object)(item) {
                *self.failed = Some(e);
                return Err(serde::de::Error::custom("stopped at a refused item"));
            }
        }
        Ok(None)
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Option<Value>, A::Error> {
        Value::deserialize(serde::de::value::MapAccessDeserializer::new(map)).map(Some)
    }
    fn visit_bool<Er: serde::de::Error>(self, v: bool) -> Result<Option<Value>, Er> {
        Ok(Some(Value::Bool(v)))
    }
    fn visit_i64<Er: serde::de::Error>(self, v: i64) -> Result<Option<Value>, Er> {
        Ok(Some(Value::from(v)))
    }
    fn visit_u64<Er: serde::de::Error>(self, v: u64) -> Result<Option<Value>, Er> {
        Ok(Some(Value::from(v)))
    }
    fn visit_f64<Er: serde::de::Error>(self, v: f64) -> Result<Option<Value>, Er> {
        Ok(Some(Value::from(v)))
    }
    fn visit_str<Er: serde::de::Error>(self, v: &str) -> Result<Option<Value>, Er> {
        Ok(Some(Value::from(v)))
    }
    fn visit_unit<Er: serde::de::Error>(self) -> Result<Option<Value>, Er> {
        Ok(Some(Value::Null))
    }
}

/// Where the YAML splitter is in the current document.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Place {
    /// Top-level lines of the document (kept to be parsed with the document).
    Top,
    /// Just after a top-level `items:` line: the next content line decides.
    AfterItems,
    /// Inside the block sequence of `items`, whose dashes are at this column.
    Items(usize),
}

struct YamlSplitter<'a, E> {
    on_object: &'a mut dyn FnMut(Value) -> Result<(), E>,
    /// The document without its streamed items.
    rest: String,
    /// The item being collected.
    item: String,
    place: Place,
    /// Items handed over from the current document.
    streamed: bool,
}

impl<'a, E> YamlSplitter<'a, E> {
    fn new(on_object: &'a mut dyn FnMut(Value) -> Result<(), E>) -> Self {
        Self {
            on_object,
            rest: String::new(),
            item: String::new(),
            place: Place::Top,
            streamed: false,
        }
    }

    fn run<R: BufRead>(mut self, mut reader: R) -> Result<(), StreamError<E>> {
        let mut line = String::new();
        loop {
            line.clear();
            if reader.read_line(&mut line).map_err(StreamError::Read)? == 0 {
                break;
            }
            self.line(&line)?;
        }
        self.end_document()
    }

    fn line(&mut self, line: &str) -> Result<(), StreamError<E>> {
        let text = line.trim_end_matches(['\n', '\r']);
        let content = text.trim_start_matches(' ');
        let indent = text.len() - content.len();
        let blank = content.is_empty() || content.starts_with('#');
        if indent == 0 && (text.starts_with("---") || text.starts_with("...")) {
            let marker_only = text[3..].trim_start().is_empty() || text[3..].starts_with(" #");
            if !marker_only {
                return Err(StreamError::Fallback);
            }
            return self.end_document();
        }
        if indent == 0 && text.starts_with('%') && self.rest.trim().is_empty() {
            return Err(StreamError::Fallback);
        }
        match self.place {
            Place::Items(_) | Place::AfterItems if blank => self.item.push_str(line),
            Place::Items(col) if indent > col => self.item.push_str(line),
            Place::Items(col) if indent == col && is_dash(content) => {
                self.flush_item()?;
                self.item.push_str(line);
            }
            // A line between the top level and the sequence's column.
            Place::Items(_) if indent > 0 => return Err(StreamError::Fallback),
            Place::AfterItems if is_dash(content) => {
                self.place = Place::Items(indent);
                self.item.clear();
                self.item.push_str(line);
            }
            Place::AfterItems => {
                // `items:` holds something else than a block sequence: parse it whole.
                self.rest.push_str("items:\n");
                self.rest.push_str(&std::mem::take(&mut self.item));
                self.place = Place::Top;
                self.rest.push_str(line);
            }
            Place::Items(_) | Place::Top => {
                self.flush_item()?;
                self.place = Place::Top;
                if indent == 0 && is_items_key(text) {
                    self.place = Place::AfterItems;
                    self.item.clear();
                } else {
                    self.rest.push_str(line);
                }
            }
        }
        Ok(())
    }

    /// Parses and hands over the item collected so far.
    fn flush_item(&mut self) -> Result<(), StreamError<E>> {
        if !matches!(self.place, Place::Items(_)) || self.item.is_empty() {
            return Ok(());
        }
        let parsed: Result<Vec<Value>, _> = serde_yaml_ng::from_str(&self.item);
        self.item.clear();
        let mut values = parsed.map_err(|_| StreamError::Fallback)?;
        let value = match (values.pop(), values.is_empty()) {
            (Some(v), true) => v,
            _ => return Err(StreamError::Fallback),
        };
        self.streamed = true;
        if value.is_null() {
            return Ok(());
        }
        (self.on_object)(value).map_err(StreamError::Item)
    }

    fn end_document(&mut self) -> Result<(), StreamError<E>> {
        if self.place == Place::AfterItems {
            // `items:` with nothing after it (null).
            self.rest.push_str("items:\n");
            self.rest.push_str(&std::mem::take(&mut self.item));
        }
        self.flush_item()?;
        self.place = Place::Top;
        let rest = std::mem::take(&mut self.rest);
        let streamed = std::mem::replace(&mut self.streamed, false);
        let value: Value = if rest.trim().is_empty() {
            Value::Null
        } else {
            serde_yaml_ng::from_str(&rest).map_err(|_| StreamError::Fallback)?
        };
        if streamed {
            // The items were handed over: the document must be a `List` of them.
            let list = value.get("kind").and_then(Value::as_str) == Some("List");
            return if list && value.get("items").is_none() {
                Ok(())
            } else {
                Err(StreamError::Fallback)
            };
        }
        self.whole_document(value)
    }

    /// A document that was not streamed: handed over whole, or its items if it is a
    /// `List` (written in flow style).
    fn whole_document(&mut self, value: Value) -> Result<(), StreamError<E>> {
        match value {
            Value::Null => Ok(()),
            Value::Object(mut map)
                if map.get("kind").and_then(Value::as_str) == Some("List")
                    && map.get("items").is_some_and(Value::is_array) =>
            {
                if let Some(Value::Array(items)) = map.remove("items") {
                    for item in items {
                        (self.on_object)(item).map_err(StreamError::Item)?;
                    }
                }
                Ok(())
            }
            value => (self.on_object)(value).map_err(StreamError::Item),
        }
    }
}

/// A block sequence entry: `-` followed by a space or the end of the line.
fn is_dash(content: &str) -> bool {
    content == "-" || content.starts_with("- ")
}

/// A top-level `items:` key with nothing after it on the line (but a comment).
fn is_items_key(text: &str) -> bool {
    text.strip_prefix("items:")
        .is_some_and(|r| r.trim().is_empty() || r.trim_start().starts_with('#'))
}

#[cfg(test)]
#[path = "snapshot_tests.rs"]
mod tests;
