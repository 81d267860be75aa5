//! A serde `Deserializer` over the positioned tree: the typed model is read from [`Node`]s, and any error
//! (unknown field, wrong type, bad duration) takes the position of the innermost node it was raised on.

use std::fmt;

use serde::de::value::StrDeserializer;
use serde::de::{self, DeserializeSeed, IntoDeserializer, Visitor};
use serde::forward_to_deserialize_any;

use super::node::{Key, Node, Pos, Value};

/// A deserialisation error; the position is filled by the innermost node that sees it.
#[derive(Clone, Debug, PartialEq)]
pub struct Error {
    pub message: String,
    pub pos: Option<Pos>,
}

impl Error {
    fn at(mut self, pos: Pos) -> Error {
        self.pos.get_or_insert(pos);
        self
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

impl de::Error for Error {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        Error { message: msg.to_string(), pos: None }
    }
}

/// Reads a `T` from a node.
pub fn from_node<'de, T: de::Deserialize<'de>>(node: &Node) -> Result<T, Error> {
    T::deserialize(NodeDe(node)).map_err(|e| e.at(node.pos))
}

struct NodeDe<'a>(&'a Node);

impl NodeDe<'_> {
    /// A substituted string that reads as a number is offered as one (`status: ${code}`).
    fn substituted_number(&self) -> Option<Value> {
        match &self.0.value {
            Value::Str(s) if self.0.substituted => {
                let s = s.trim();
                if let Ok(n) = s.parse::<u64>() {
                    Some(Value::UInt(n))
                } else if let Ok(n) = s.parse::<i64>() {
                    Some(Value::Int(n))
                } else if s.parse::<f64>().is_ok() && s.chars().any(|c| c.is_ascii_digit()) {
                    s.parse::<f64>().ok().map(Value::Float)
                } else {
                    match s {
                        "true" => Some(Value::Bool(true)),
                        "false" => Some(Value::Bool(false)),
                        _ => None,
                    }
                }
            }
            _ => None,
        }
    }

    fn visit<'de, V: Visitor<'de>>(&self, value: &Value, visitor: V) -> Result<V::Value, Error> {
        match value {
            Value::Null => visitor.visit_unit(),
            Value::Bool(b) => visitor.visit_bool(*b),
            Value::Int(n) => visitor.visit_i64(*n),
            Value::UInt(n) => visitor.visit_u64(*n),
            Value::Float(n) => visitor.visit_f64(*n),
            Value::Str(s) => visitor.visit_str(s),
            Value::Seq(items) => visitor.visit_seq(SeqAccess { items: items.iter() }),
            Value::Map(entries) => visitor.visit_map(MapAccess { entries: entries.iter(), value: None }),
        }
    }
}

macro_rules! numeric {
    ($($method:ident)*) => {
        $(
            fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
                match self.substituted_number() {
                    Some(value) => self.visit(&value, visitor).map_err(|e| e.at(self.0.pos)),
                    None => self.deserialize_any(visitor),
                }
            }
        )*
    };
}

impl<'de> de::Deserializer<'de> for NodeDe<'_> {
    type Error = Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        let value = self.substituted_number();
        let value = value.as_ref().unwrap_or(&self.0.value);
        self.visit(value, visitor).map_err(|e| e.at(self.0.pos))
    }

    numeric!(deserialize_bool deserialize_i8 deserialize_i16 deserialize_i32 deserialize_i64 deserialize_i128
        deserialize_u8 deserialize_u16 deserialize_u32 deserialize_u64 deserialize_u128
        deserialize_f32 deserialize_f64);

    /// Scalars are accepted where text is expected (`name: 2024`), as YAML authors expect.
    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        let text = match &self.0.value {
            Value::Bool(b) => Some(b.to_string()),
            Value::Int(n) => Some(n.to_string()),
            Value::UInt(n) => Some(n.to_string()),
            Value::Float(n) => Some(n.to_string()),
            _ => None,
        };
        match text {
            Some(text) => visitor.visit_str::<Error>(&text).map_err(|e| e.at(self.0.pos)),
            None => self.visit(&self.0.value, visitor).map_err(|e| e.at(self.0.pos)),
        }
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_str(visitor)
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.0.value {
            Value::Null => visitor.visit_none(),
            _ => visitor.visit_some(self),
        }
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Error> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        match &self.0.value {
            Value::Str(s) => {
                let de: StrDeserializer<'_, Error> = s.as_str().into_deserializer();
                visitor.visit_enum(de).map_err(|e| e.at(self.0.pos))
            }
            _ => Err(de::Error::custom(format!("expected one of the names, found {}", self.0.kind()))),
        }
    }

    forward_to_deserialize_any! {
        char bytes byte_buf unit unit_struct seq tuple tuple_struct map struct identifier ignored_any
    }
}

struct KeyDe<'a>(&'a Key);

impl<'de> de::Deserializer<'de> for KeyDe<'_> {
    type Error = Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_str::<Error>(&self.0.name).map_err(|e| e.at(self.0.pos))
    }

    forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf option unit unit_struct newtype_struct seq tuple
        tuple_struct map struct enum identifier ignored_any
    }
}

struct SeqAccess<'a> {
    items: std::slice::Iter<'a, Node>,
}

impl<'de> de::SeqAccess<'de> for SeqAccess<'_> {
    type Error = Error;
    fn next_element_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<Option<T::Value>, Error> {
        match self.items.next() {
            Some(node) => seed.deserialize(NodeDe(node)).map(Some).map_err(|e| e.at(node.pos)),
            None => Ok(None),
        }
    }
    fn size_hint(&self) -> Option<usize> {
        Some(self.items.len())
    }
}

struct MapAccess<'a> {
    entries: std::slice::Iter<'a, (Key, Node)>,
    value: Option<&'a Node>,
}

impl<'de> de::MapAccess<'de> for MapAccess<'_> {
    type Error = Error;
    fn next_key_seed<K: DeserializeSeed<'de>>(&mut self, seed: K) -> Result<Option<K::Value>, Error> {
        match self.entries.next() {
            Some((key, value)) => {
                self.value = Some(value);
                seed.deserialize(KeyDe(key)).map(Some).map_err(|e| e.at(key.pos))
            }
            None => Ok(None),
        }
    }
    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, Error> {
        match self.value.take() {
            Some(node) => seed.deserialize(NodeDe(node)).map_err(|e| e.at(node.pos)),
            None => Err(de::Error::custom("value without a key")),
        }
    }
    fn size_hint(&self) -> Option<usize> {
        Some(self.entries.len())
    }
}
