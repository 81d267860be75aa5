//! Variables: `${name}` from `vars:` (overridden by `--var name=value`), `${env:NAME}` from the environment,
//! and `$${` for a literal `${`. Substitution happens on the positioned tree's string values, so every later
//! error still points at the original file, and a bad reference is reported where it is written.
//!
//! Expansion is bounded: a few hundred bytes of variables that double each other would otherwise ask for
//! gigabytes (and a controller parses files sent by clients). All the text substitution produces for one
//! document counts against [`MAX_EXPANDED_BYTES`], and a chain of variables referring to variables may be at
//! most [`MAX_DEPTH`] long; going past either is an error at the reference that went past it.

use std::cell::Cell;
use std::collections::{BTreeMap, BTreeSet};

use super::node::{Key, Node, Pos, Value};

/// The most text that substitution may produce for one document, every expanded value counted (1 MiB).
pub const MAX_EXPANDED_BYTES: usize = 1 << 20;

/// The longest chain of variables whose values refer to other variables (`a` uses `b` uses `c`: 3).
pub const MAX_DEPTH: usize = 16;

/// What is left of [`MAX_EXPANDED_BYTES`] for the document being substituted, shared by every expansion.
struct Budget {
    left: Cell<usize>,
    /// Whether going over was reported already: the first reference that goes over is reported, the many
    /// that would follow it are the same problem.
    reported: Cell<bool>,
}

impl Budget {
    fn new() -> Self {
        Budget { left: Cell::new(MAX_EXPANDED_BYTES), reported: Cell::new(false) }
    }

    /// Takes `n` bytes; on failure the message to report (empty once it was reported).
    fn take(&self, n: usize) -> Result<(), String> {
        match self.left.get().checked_sub(n) {
            Some(left) => {
                self.left.set(left);
                Ok(())
            }
            None if self.reported.replace(true) => Err(String::new()),
            None => Err(format!(
                "variables expand to more than {MAX_EXPANDED_BYTES} bytes of text here (the limit for a whole \
                 experiment): does a variable repeat another one many times?"
            )),
        }
    }
}

/// A substitution problem at a position.
#[derive(Clone, Debug, PartialEq)]
pub struct VarError {
    pub pos: Pos,
    pub message: String,
}

/// Where variable values come from.
pub trait Env {
    fn var(&self, name: &str) -> Option<String>;
}

/// Whether `name` may be used as a variable name: a letter or `_`, then letters, digits, `_`, `-` or `.`.
pub fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

/// One piece of a string with references.
#[derive(Debug, PartialEq)]
enum Piece<'a> {
    Text(&'a str),
    Var(&'a str),
    EnvVar(&'a str),
}

/// Splits a string into text and references; the error is (byte offset, message).
fn pieces(s: &str) -> Result<Vec<Piece<'_>>, (usize, String)> {
    let mut out = Vec::new();
    let mut rest = s;
    let mut offset = 0;
    while let Some(i) = rest.find('$') {
        let after = &rest[i..];
        if after.starts_with("$${") {
            out.push(Piece::Text(&rest[..i]));
            out.push(Piece::Text("${"));
            rest = &rest[i + 3..];
            offset += i + 3;
        } else if after.starts_with("${") {
            out.push(Piece::Text(&rest[..i]));
            let Some(end) = after.find('}') else {
                return Err((
                    offset + i,
                    "unterminated `${`: close it with `}` or write `$${` for a literal".into(),
                ));
            };
            let inner = &after[2..end];
            let piece = match inner.strip_prefix("env:") {
                Some(name)
                    if !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') =>
                {
                    Piece::EnvVar(name)
                }
                Some(name) => {
                    return Err((offset + i, format!("invalid environment variable name {name:?}")));
                }
                None if valid_name(inner) => Piece::Var(inner),
                None => return Err((offset + i, format!("invalid variable name {inner:?}"))),
            };
            out.push(piece);
            rest = &after[end + 1..];
            offset += i + end + 1;
        } else {
            out.push(Piece::Text(&rest[..=i]));
            rest = &rest[i + 1..];
            offset += i + 1;
        }
    }
    out.push(Piece::Text(rest));
    Ok(out)
}

/// Whether `s` holds a reference or an escape (and so needs substitution).
fn has_dollar_brace(s: &str) -> bool {
    s.contains("${")
}

/// Substitutes in the whole document: resolves `vars:` (with `overrides` taking precedence), writes the
/// resolved values back into `vars:` (so the run records what it used), and substitutes every other string
/// value. Keys are not substituted. Returns every error found.
pub fn substitute(
    root: &mut Node,
    source: &str,
    overrides: &[(String, String)],
    env: &dyn Env,
) -> Vec<VarError> {
    let mut errors = Vec::new();
    let Value::Map(entries) = &mut root.value else { return errors };

    // Raw definitions: the file's `vars:`, then overrides (taken literally).
    let mut raw: BTreeMap<String, (Option<Node>, String)> = BTreeMap::new();
    let vars_index = entries.iter().position(|(k, _)| k.name == "vars");
    if let Some(index) = vars_index
        && let Value::Map(vars) = &entries[index].1.value
    {
        {
            for (key, value) in vars {
                if !valid_name(&key.name) {
                    errors.push(VarError {
                        pos: key.pos,
                        message: format!(
                            "invalid variable name {:?} (use letters, digits, `_`, `-`, `.`)",
                            key.name
                        ),
                    });
                }
                let text = match &value.value {
                    Value::Str(s) => s.clone(),
                    Value::Int(n) => n.to_string(),
                    Value::UInt(n) => n.to_string(),
                    Value::Float(n) => n.to_string(),
                    Value::Bool(b) => b.to_string(),
                    _ => continue, // the typed read reports the wrong type
                };
                raw.insert(key.name.clone(), (Some(value.clone()), text));
            }
        }
    }
    // An override must name a variable the file defines or uses: a mistyped `--var apii=…` is an error, not a
    // value silently ignored while the default is used.
    let defined: Vec<String> = raw.keys().cloned().collect();
    for (name, _) in overrides {
        if !raw.contains_key(name) && !source.contains(&format!("${{{name}}}")) {
            let known = if defined.is_empty() { "none".to_string() } else { defined.join(", ") };
            errors.push(VarError {
                pos: vars_index.map_or(root.pos, |i| entries[i].0.pos),
                message: format!(
                    "--var {name}=…: this file neither defines nor uses a variable `{name}` (its variables: {known})"
                ),
            });
        }
    }
    for (name, value) in overrides {
        raw.insert(name.clone(), (None, value.clone()));
    }

    let budget = Budget::new();
    let mut resolver = Resolver {
        raw: &raw,
        source,
        env,
        budget: &budget,
        resolved: BTreeMap::new(),
        depths: BTreeMap::new(),
        failed: BTreeSet::new(),
        errors: Vec::new(),
    };
    let names: Vec<String> = raw.keys().cloned().collect();
    for name in &names {
        resolver.resolve(name, &mut Vec::new());
    }
    let resolved = resolver.resolved;
    errors.append(&mut resolver.errors);

    // Write the resolved values back into `vars:` (adding names only given as overrides).
    let vars_pos = vars_index.map_or(root.pos, |i| entries[i].1.pos);
    let mut vars_entries: Vec<(Key, Node)> = Vec::new();
    if let Some(index) = vars_index
        && let Value::Map(vars) = &entries[index].1.value
    {
        vars_entries = vars.clone();
    }
    for (name, value) in &resolved {
        match vars_entries.iter_mut().find(|(k, _)| &k.name == name) {
            Some((_, node)) => {
                node.value = Value::Str(value.clone());
                node.substituted = false;
            }
            None => vars_entries.push((
                Key { name: name.clone(), pos: vars_pos },
                Node::new(Value::Str(value.clone()), vars_pos),
            )),
        }
    }
    match vars_index {
        Some(index) => {
            if matches!(entries[index].1.value, Value::Map(_)) {
                entries[index].1.value = Value::Map(vars_entries);
            }
        }
        None if !vars_entries.is_empty() => {
            let key = Key { name: "vars".into(), pos: root.pos };
            entries.push((key, Node::new(Value::Map(vars_entries), root.pos)));
        }
        None => {}
    }

    let lookup = Lookup { vars: &resolved, defined: &raw, env, source, budget: &budget };
    for (key, node) in entries.iter_mut() {
        if key.name != "vars" {
            walk(node, &lookup, &mut errors);
        }
    }
    errors.sort_by_key(|e| e.pos);
    errors.dedup();
    errors
}

struct Lookup<'a> {
    vars: &'a BTreeMap<String, String>,
    /// Every defined name, including those whose value failed to resolve (already reported).
    defined: &'a BTreeMap<String, (Option<Node>, String)>,
    env: &'a dyn Env,
    source: &'a str,
    budget: &'a Budget,
}

fn walk(node: &mut Node, lookup: &Lookup<'_>, errors: &mut Vec<VarError>) {
    match &mut node.value {
        Value::Str(s) if has_dollar_brace(s) => {
            let pos = node.pos;
            match expand(s, lookup.budget, |piece| match piece {
                Piece::Var(name) => match lookup.vars.get(*name) {
                    Some(value) => Ok(value.clone()),
                    None if lookup.defined.contains_key(*name) => Err(String::new()),
                    None => Err(format!("unknown variable `{name}`")),
                },
                Piece::EnvVar(name) => {
                    lookup.env.var(name).ok_or_else(|| format!("environment variable `{name}` is not set"))
                }
                Piece::Text(t) => Ok(t.to_string()),
            }) {
                Ok(out) => {
                    node.value = Value::Str(out);
                    node.substituted = true;
                }
                // An empty message stands for a variable whose own definition failed: reported there.
                Err(found) => {
                    errors.extend(found.into_iter().filter(|(_, m)| !m.is_empty()).map(|(token, message)| {
                        VarError { pos: locate(lookup.source, pos, token.as_deref()), message }
                    }))
                }
            }
        }
        Value::Seq(items) => items.iter_mut().for_each(|n| walk(n, lookup, errors)),
        Value::Map(entries) => entries.iter_mut().for_each(|(_, n)| walk(n, lookup, errors)),
        _ => {}
    }
}

/// Expands one string, taking what it produces from `budget` (and stopping at the first piece that does not
/// fit); errors are (the reference's text, if any, to locate it; message).
fn expand(
    s: &str,
    budget: &Budget,
    mut value_of: impl FnMut(&Piece<'_>) -> Result<String, String>,
) -> Result<String, Vec<(Option<String>, String)>> {
    // Once the budget is spent (and reported), nothing more is expanded: each attempt would copy up to a
    // whole budget's worth of text only to fail.
    if budget.reported.get() {
        return Err(vec![(None, String::new())]);
    }
    let pieces = pieces(s).map_err(|(offset, message)| {
        let token = s[offset..].chars().take(2).collect::<String>();
        vec![(Some(token), message)]
    })?;
    let mut out = String::new();
    let mut errors = Vec::new();
    let token = |piece: &Piece<'_>| match piece {
        Piece::Var(name) => format!("${{{name}}}"),
        Piece::EnvVar(name) => format!("${{env:{name}}}"),
        Piece::Text(t) => t.to_string(),
    };
    for piece in &pieces {
        match value_of(piece) {
            Ok(text) => {
                if let Err(message) = budget.take(text.len()) {
                    errors.push((Some(token(piece)), message));
                    break;
                }
                out.push_str(&text);
            }
            Err(message) => errors.push((Some(token(piece)), message)),
        }
    }
    if errors.is_empty() { Ok(out) } else { Err(errors) }
}

/// The position of `token` in the source at or after `start` (a string's first character), so that an error
/// points at the reference itself; the string's position when the token is not written literally.
fn locate(source: &str, start: Pos, token: Option<&str>) -> Pos {
    let Some(token) = token else { return start };
    let mut line_start = 0;
    for _ in 1..start.line {
        match source[line_start..].find('\n') {
            Some(i) => line_start += i + 1,
            None => return start,
        }
    }
    let from = source[line_start..]
        .char_indices()
        .nth(start.column - 1)
        .map_or(source.len(), |(i, _)| line_start + i);
    let Some(found) = source[from..].find(token) else { return start };
    let at = from + found;
    let line = start.line + source[from..at].matches('\n').count();
    let this_line_start = source[..at].rfind('\n').map_or(0, |i| i + 1);
    Pos::new(line, source[this_line_start..at].chars().count() + 1)
}

struct Resolver<'a> {
    raw: &'a BTreeMap<String, (Option<Node>, String)>,
    source: &'a str,
    env: &'a dyn Env,
    budget: &'a Budget,
    resolved: BTreeMap<String, String>,
    /// How deep each resolved variable's references go (1: none), so depth does not depend on the order in
    /// which variables happen to be resolved.
    depths: BTreeMap<String, usize>,
    /// Variables whose value failed (reported once): without this, variables that double a failing one
    /// would retry it an exponential number of times.
    failed: BTreeSet<String>,
    errors: Vec<VarError>,
}

impl Resolver<'_> {
    /// Resolves a variable's value (which may itself use `${other}` and `${env:X}`), refusing cycles and
    /// chains deeper than [`MAX_DEPTH`]. Returns the value and its depth (1 for a value without references).
    fn resolve(&mut self, name: &str, stack: &mut Vec<String>) -> Option<(String, usize)> {
        if let Some(v) = self.resolved.get(name) {
            return Some((v.clone(), self.depths.get(name).copied().unwrap_or(1)));
        }
        if self.failed.contains(name) {
            return None;
        }
        let raw = self.raw;
        let (node, text) = raw.get(name)?;
        let pos = node.as_ref().map_or(Pos::START, |n| n.pos);
        // Overrides are literal: they come from the command line, where `$` means what the shell left.
        if node.is_none() {
            self.resolved.insert(name.to_string(), text.clone());
            return Some((text.clone(), 1));
        }
        if stack.iter().any(|s| s == name) {
            self.errors.push(VarError {
                pos,
                message: format!("variable `{name}` refers to itself through {}", stack.join(" -> ")),
            });
            return None;
        }
        // Every variable on the stack is still being resolved, so it is deeper than the stack is long: this
        // also bounds the recursion.
        if stack.len() >= MAX_DEPTH {
            return self.too_deep(name, pos);
        }
        stack.push(name.to_string());
        let env = self.env;
        let budget = self.budget;
        let mut deepest = 0;
        let result = {
            let mut value_of = |piece: &Piece<'_>| match piece {
                Piece::Var(other) => {
                    if raw.contains_key(*other) {
                        let (value, depth) = self.resolve(other, stack).ok_or_else(String::new)?;
                        deepest = deepest.max(depth);
                        Ok(value)
                    } else {
                        Err(format!("unknown variable `{other}`"))
                    }
                }
                Piece::EnvVar(var) => {
                    env.var(var).ok_or_else(|| format!("environment variable `{var}` is not set"))
                }
                Piece::Text(t) => Ok(t.to_string()),
            };
            expand(text, budget, &mut value_of)
        };
        stack.pop();
        match result {
            Ok(_) if deepest >= MAX_DEPTH => self.too_deep(name, pos),
            Ok(value) => {
                self.resolved.insert(name.to_string(), value.clone());
                self.depths.insert(name.to_string(), deepest + 1);
                Some((value, deepest + 1))
            }
            Err(found) => {
                for (token, message) in found {
                    // An empty message means the referenced variable failed: that one was reported already.
                    if !message.is_empty() {
                        let pos = locate(self.source, pos, token.as_deref());
                        self.errors.push(VarError { pos, message });
                    }
                }
                self.failed.insert(name.to_string());
                None
            }
        }
    }

    fn too_deep(&mut self, name: &str, pos: Pos) -> Option<(String, usize)> {
        self.errors.push(VarError {
            pos,
            message: format!(
                "variables nest more than {MAX_DEPTH} deep at `{name}` (a variable using a variable using …): \
                 use fewer levels"
            ),
        });
        self.failed.insert(name.to_string());
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces_split_references_and_escapes() {
        assert_eq!(
            pieces("a${b}c$${d}$e${env:HOME}").unwrap(),
            vec![
                Piece::Text("a"),
                Piece::Var("b"),
                Piece::Text("c"),
                Piece::Text("${"),
                Piece::Text("d}$"),
                Piece::Text("e"),
                Piece::EnvVar("HOME"),
                Piece::Text(""),
            ]
        );
        assert!(pieces("${unclosed").is_err());
        assert!(pieces("${}").is_err());
        assert!(pieces("${env:}").is_err());
    }

    #[test]
    fn locate_finds_the_reference() {
        let source = "a: 1\nb: \"x ${nope}\"\n";
        assert_eq!(locate(source, Pos::new(2, 4), Some("${nope}")), Pos::new(2, 7));
        assert_eq!(locate(source, Pos::new(2, 4), Some("${gone}")), Pos::new(2, 4));
    }
}
