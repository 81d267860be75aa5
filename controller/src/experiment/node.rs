//! A document as a tree of positioned nodes, read from YAML or JSON before anything is typed, so that
//! substitution, deserialisation and validation can all point at the original file's line and column.

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_saphyr::Spanned;

/// A 1-based line and column (in characters) in the original file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Pos {
    pub line: usize,
    pub column: usize,
}

impl Pos {
    pub const START: Pos = Pos { line: 1, column: 1 };

    /// Clamps to 1:1 at least, since some sources report column 0 for "before the first character".
    pub fn new(line: usize, column: usize) -> Pos {
        Pos { line: line.max(1), column: column.max(1) }
    }
}

/// One value of the document with where it starts.
#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    pub value: Value,
    pub pos: Pos,
    /// The string came (at least partly) from a `${...}` substitution: a number-shaped result may be read
    /// as a number, since the author could not have written it unquoted.
    pub substituted: bool,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Int(i64),
    UInt(u64),
    Float(f64),
    Str(String),
    Seq(Vec<Node>),
    Map(Vec<(Key, Node)>),
}

/// A mapping key (always read as text) with its own position.
#[derive(Clone, Debug, PartialEq)]
pub struct Key {
    pub name: String,
    pub pos: Pos,
}

/// One step of a path into the tree.
#[derive(Clone, Copy, Debug)]
pub enum Seg<'a> {
    K(&'a str),
    I(usize),
}

impl Node {
    pub fn new(value: Value, pos: Pos) -> Node {
        Node { value, pos, substituted: false }
    }

    /// The entry `key` of a mapping node.
    pub fn get(&self, key: &str) -> Option<&Node> {
        self.entry(key).map(|(_, v)| v)
    }

    pub fn entry(&self, key: &str) -> Option<(&Key, &Node)> {
        match &self.value {
            Value::Map(entries) => entries.iter().find(|(k, _)| k.name == key).map(|(k, v)| (k, v)),
            _ => None,
        }
    }

    /// Position of the node at `path`, or of the deepest node on the way that exists.
    pub fn pos_at(&self, path: &[Seg<'_>]) -> Pos {
        let mut node = self;
        for seg in path {
            let next = match (seg, &node.value) {
                (Seg::K(k), _) => node.get(k),
                (Seg::I(i), Value::Seq(items)) => items.get(*i),
                _ => None,
            };
            match next {
                Some(n) => node = n,
                None => break,
            }
        }
        node.pos
    }

    /// Position of the key at the end of `path` (the last segment must be a key), else like [`Node::pos_at`].
    pub fn key_pos_at(&self, path: &[Seg<'_>]) -> Pos {
        if let Some((Seg::K(last), parent)) = path.split_last() {
            let mut node = Some(self);
            for seg in parent {
                node = match (seg, node.map(|n| &n.value)) {
                    (Seg::K(k), Some(_)) => node.and_then(|n| n.get(k)),
                    (Seg::I(i), Some(Value::Seq(items))) => items.get(*i),
                    _ => None,
                };
            }
            if let Some((key, _)) = node.and_then(|n| n.entry(last)) {
                return key.pos;
            }
        }
        self.pos_at(path)
    }

    /// A short description of the node's type, for messages.
    pub fn kind(&self) -> &'static str {
        match self.value {
            Value::Null => "null",
            Value::Bool(_) => "a boolean",
            Value::Int(_) | Value::UInt(_) => "an integer",
            Value::Float(_) => "a number",
            Value::Str(_) => "a string",
            Value::Seq(_) => "a sequence",
            Value::Map(_) => "a mapping",
        }
    }
}

/// A document that could not be read, with where.
#[derive(Clone, Debug, PartialEq)]
pub struct SyntaxError {
    pub pos: Pos,
    pub message: String,
}

// === YAML ===

/// Reads a YAML document (one document; anchors and aliases resolved, duplicate keys refused).
pub fn from_yaml(text: &str) -> Result<Node, SyntaxError> {
    match serde_saphyr::from_str::<YamlNode>(text) {
        Ok(YamlNode(node)) => Ok(node),
        Err(err) => Err(yaml_error(&err)),
    }
}

/// Reads every document of a YAML stream (`---` between documents; empty documents skipped), positions
/// counted from the start of the stream.
pub fn from_yaml_multi(text: &str) -> Result<Vec<Node>, SyntaxError> {
    match serde_saphyr::from_multiple::<YamlNode>(text) {
        Ok(docs) => Ok(docs.into_iter().map(|YamlNode(node)| node).collect()),
        Err(err) => Err(yaml_error(&err)),
    }
}

fn yaml_error(err: &serde_saphyr::Error) -> SyntaxError {
    let inner = err.without_snippet();
    let pos =
        inner.location().map(|l| Pos::new(to_usize(l.line()), to_usize(l.column()))).unwrap_or(Pos::START);
    let rendered = inner.to_string();
    SyntaxError { pos, message: clean_yaml_message(&rendered) }
}

fn to_usize(n: u64) -> usize {
    usize::try_from(n).unwrap_or(usize::MAX)
}

/// serde-saphyr renders "message at line L, column C" (sometimes over several lines); keep the message.
fn clean_yaml_message(rendered: &str) -> String {
    let first = rendered.lines().find(|l| !l.trim().is_empty()).unwrap_or("invalid YAML").trim();
    let cut = first.find(" at line ").map_or(first, |i| &first[..i]);
    let cut = cut.strip_prefix("error: ").unwrap_or(cut);
    let cut = cut.trim_end_matches(['.', ':', ',']);
    // serde-saphyr suggests a library option here; say what the author can act on.
    match cut.strip_prefix("duplicate mapping key: ") {
        Some(rest) => {
            format!("duplicate key `{}`", rest.split(", set DuplicateKeyPolicy").next().unwrap_or(rest))
        }
        None => cut.to_string(),
    }
}

fn pos_of(loc: &serde_saphyr::Location) -> Pos {
    Pos::new(to_usize(loc.line()), to_usize(loc.column()))
}

struct YamlNode(Node);

impl<'de> Deserialize<'de> for YamlNode {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let spanned = Spanned::<YamlValue>::deserialize(d)?;
        Ok(YamlNode(Node::new(spanned.value.0, pos_of(&spanned.referenced))))
    }
}

struct YamlValue(Value);

impl<'de> Deserialize<'de> for YamlValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ValueVisitor).map(YamlValue)
    }
}

struct ValueVisitor;

impl<'de> Visitor<'de> for ValueVisitor {
    type Value = Value;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any YAML value")
    }
    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Int(v))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Value, E> {
        Ok(Value::UInt(v))
    }
    fn visit_i128<E: de::Error>(self, v: i128) -> Result<Value, E> {
        Ok(i64::try_from(v).map(Value::Int).unwrap_or(Value::Float(v as f64)))
    }
    fn visit_u128<E: de::Error>(self, v: u128) -> Result<Value, E> {
        Ok(u64::try_from(v).map(Value::UInt).unwrap_or(Value::Float(v as f64)))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        Ok(Value::Float(v))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Value, E> {
        Ok(Value::Str(v.to_string()))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Value, E> {
        Ok(Value::Str(v))
    }
    fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Value, E> {
        Ok(Value::Str(String::from_utf8_lossy(v).into_owned()))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(YamlNode(node)) = seq.next_element()? {
            items.push(node);
        }
        Ok(Value::Seq(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut entries: Vec<(Key, Node)> = Vec::new();
        while let Some(key) = map.next_key::<Spanned<KeyText>>()? {
            let YamlNode(value) = map.next_value()?;
            let key = Key { name: key.value.0, pos: pos_of(&key.referenced) };
            entries.push((key, value));
        }
        Ok(Value::Map(entries))
    }
}

/// A mapping key of any scalar type, as text.
struct KeyText(String);

impl<'de> Deserialize<'de> for KeyText {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = match d.deserialize_any(ValueVisitor)? {
            Value::Str(s) => s,
            Value::Null => "null".to_string(),
            Value::Bool(b) => b.to_string(),
            Value::Int(n) => n.to_string(),
            Value::UInt(n) => n.to_string(),
            Value::Float(n) => n.to_string(),
            Value::Seq(_) | Value::Map(_) => return Err(de::Error::custom("a mapping key must be a scalar")),
        };
        Ok(KeyText(text))
    }
}

// === JSON ===

/// Reads a JSON document. serde_json judges the syntax (its messages and positions); a small reader then
/// builds the positioned tree, refusing duplicate keys.
pub fn from_json(text: &str) -> Result<Node, SyntaxError> {
    if let Err(err) = serde_json::from_str::<de::IgnoredAny>(text) {
        let full = err.to_string();
        let message = full.rfind(" at line ").map_or(full.as_str(), |i| &full[..i]).to_string();
        return Err(SyntaxError { pos: Pos::new(err.line(), err.column()), message });
    }
    let mut reader = JsonReader { chars: text.chars().collect(), at: 0, line: 1, column: 1, depth: 0 };
    reader.skip_ws();
    let node = reader.value()?;
    reader.skip_ws();
    if reader.peek().is_some() {
        return Err(reader.error("trailing characters"));
    }
    Ok(node)
}

struct JsonReader {
    chars: Vec<char>,
    at: usize,
    line: usize,
    column: usize,
    depth: usize,
}

impl JsonReader {
    fn pos(&self) -> Pos {
        Pos::new(self.line, self.column)
    }

    fn error(&self, message: &str) -> SyntaxError {
        SyntaxError { pos: self.pos(), message: message.to_string() }
    }

    fn peek(&self) -> Option<char> {
        self.chars.get(self.at).copied()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.at += 1;
        if c == '\n' {
            self.line += 1;
            self.column = 1;
        } else {
            self.column += 1;
        }
        Some(c)
    }

    fn skip_ws(&mut self) {
        while matches!(self.peek(), Some(' ' | '\t' | '\n' | '\r')) {
            self.bump();
        }
    }

    fn expect(&mut self, c: char) -> Result<(), SyntaxError> {
        if self.peek() == Some(c) {
            self.bump();
            Ok(())
        } else {
            Err(self.error(&format!("expected `{c}`")))
        }
    }

    fn value(&mut self) -> Result<Node, SyntaxError> {
        let pos = self.pos();
        let value = match self.peek() {
            Some('{') => self.nested(Self::object)?,
            Some('[') => self.nested(Self::array)?,
            Some('"') => Value::Str(self.string()?),
            Some('t') => self.word("true", Value::Bool(true))?,
            Some('f') => self.word("false", Value::Bool(false))?,
            Some('n') => self.word("null", Value::Null)?,
            Some(c) if c == '-' || c.is_ascii_digit() => self.number()?,
            _ => return Err(self.error("expected value")),
        };
        Ok(Node::new(value, pos))
    }

    fn nested(&mut self, f: fn(&mut Self) -> Result<Value, SyntaxError>) -> Result<Value, SyntaxError> {
        // serde_json refuses nesting past 128 levels, so this only guards the reader's own stack.
        self.depth += 1;
        if self.depth > 256 {
            return Err(self.error("recursion limit exceeded"));
        }
        let value = f(self);
        self.depth -= 1;
        value
    }

    fn object(&mut self) -> Result<Value, SyntaxError> {
        self.expect('{')?;
        let mut entries: Vec<(Key, Node)> = Vec::new();
        self.skip_ws();
        if self.peek() == Some('}') {
            self.bump();
            return Ok(Value::Map(entries));
        }
        loop {
            self.skip_ws();
            let key_pos = self.pos();
            let name = self.string()?;
            if entries.iter().any(|(k, _)| k.name == name) {
                return Err(SyntaxError { pos: key_pos, message: format!("duplicate key `{name}`") });
            }
            self.skip_ws();
            self.expect(':')?;
            self.skip_ws();
            let value = self.value()?;
            entries.push((Key { name, pos: key_pos }, value));
            self.skip_ws();
            match self.bump() {
                Some(',') => continue,
                Some('}') => return Ok(Value::Map(entries)),
                _ => return Err(self.error("expected `,` or `}`")),
            }
        }
    }

    fn array(&mut self) -> Result<Value, SyntaxError> {
        self.expect('[')?;
        let mut items = Vec::new();
        self.skip_ws();
        if self.peek() == Some(']') {
            self.bump();
            return Ok(Value::Seq(items));
        }
        loop {
            self.skip_ws();
            items.push(self.value()?);
            self.skip_ws();
            match self.bump() {
                Some(',') => continue,
                Some(']') => return Ok(Value::Seq(items)),
                _ => return Err(self.error("expected `,` or `]`")),
            }
        }
    }

    fn word(&mut self, word: &str, value: Value) -> Result<Value, SyntaxError> {
        for expected in word.chars() {
            if self.bump() != Some(expected) {
                return Err(self.error("expected value"));
            }
        }
        Ok(value)
    }

    fn number(&mut self) -> Result<Value, SyntaxError> {
        let start = self.at;
        while matches!(self.peek(), Some(c) if c.is_ascii_digit() || matches!(c, '-' | '+' | '.' | 'e' | 'E'))
        {
            self.bump();
        }
        let text: String = self.chars[start..self.at].iter().collect();
        if let Ok(n) = text.parse::<u64>() {
            return Ok(Value::UInt(n));
        }
        if let Ok(n) = text.parse::<i64>() {
            return Ok(Value::Int(n));
        }
        text.parse::<f64>().map(Value::Float).map_err(|_| self.error("invalid number"))
    }

    fn string(&mut self) -> Result<String, SyntaxError> {
        self.expect('"')?;
        let mut out = String::new();
        loop {
            match self.bump() {
                None => return Err(self.error("EOF while parsing a string")),
                Some('"') => return Ok(out),
                Some('\\') => match self.bump() {
                    Some('"') => out.push('"'),
                    Some('\\') => out.push('\\'),
                    Some('/') => out.push('/'),
                    Some('b') => out.push('\u{8}'),
                    Some('f') => out.push('\u{c}'),
                    Some('n') => out.push('\n'),
                    Some('r') => out.push('\r'),
                    Some('t') => out.push('\t'),
                    Some('u') => out.push(self.unicode_escape()?),
                    _ => return Err(self.error("invalid escape")),
                },
                Some(c) => out.push(c),
            }
        }
    }

    fn hex4(&mut self) -> Result<u32, SyntaxError> {
        let mut n = 0u32;
        for _ in 0..4 {
            let digit =
                self.bump().and_then(|c| c.to_digit(16)).ok_or_else(|| self.error("invalid escape"))?;
            n = n * 16 + digit;
        }
        Ok(n)
    }

    fn unicode_escape(&mut self) -> Result<char, SyntaxError> {
        let first = self.hex4()?;
        if (0xD800..0xDC00).contains(&first) && self.peek() == Some('\\') {
            let (at, line, column) = (self.at, self.line, self.column);
            self.bump();
            if self.bump() == Some('u') {
                let second = self.hex4()?;
                if (0xDC00..0xE000).contains(&second) {
                    let code = 0x10000 + ((first - 0xD800) << 10) + (second - 0xDC00);
                    return Ok(char::from_u32(code).unwrap_or('\u{FFFD}'));
                }
            }
            (self.at, self.line, self.column) = (at, line, column);
        }
        Ok(char::from_u32(first).unwrap_or('\u{FFFD}'))
    }
}
