//! The tidy test (after rust-analyzer's): the house rules a reviewer would otherwise check by hand, enforced by
//! reading the repository's files. Pure file reading, no build, no process: it runs in well under a second.
//!
//! One `#[test]` per rule, so every broken rule is reported at once:
//! - every `.rs` module under a crate's `src/` opens with a `//!` line;
//! - the controller's engine names no `fleet`, `server` or `store` module;
//! - no crate has a file-level import cycle (see [`cycles`] for what an edge is);
//! - every repository path ARCHITECTURE.md names exists;
//! - no Markdown file links outside the repository;
//! - no test source names a fixed port on the host's loopback except the unreachable or never-bound ones listed.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The repository's root (the root package's manifest directory).
fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Every file under `dir` (recursively, skipping `target/`, `.git/` and other hidden directories), sorted.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        for entry in entries.flatten() {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            if path.is_dir() {
                if name != "target" && !name.starts_with('.') {
                    stack.push(path);
                }
            } else {
                found.push(path);
            }
        }
    }
    found.sort();
    found
}

/// `path` relative to the repository root, with `/` separators.
fn rel(path: &Path) -> String {
    path.strip_prefix(root()).unwrap_or(path).to_string_lossy().replace('\\', "/")
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// The crates' source directories: the root package's `src/` and every `X/src/` beside an `X/Cargo.toml`.
fn src_dirs() -> Vec<(String, PathBuf)> {
    let root = root();
    let mut dirs = vec![("chaos".to_string(), root.join("src"))];
    for entry in std::fs::read_dir(&root).unwrap().flatten() {
        let dir = entry.path();
        if dir.join("Cargo.toml").is_file() && dir.join("src").is_dir() {
            dirs.push((entry.file_name().to_string_lossy().into_owned(), dir.join("src")));
        }
    }
    dirs.sort();
    dirs
}

/// Fails with every finding of a rule, one per line.
fn report(rule: &str, findings: Vec<String>) {
    assert!(findings.is_empty(), "{rule}: {} finding(s):\n  {}", findings.len(), findings.join("\n  "));
}

// === rules ===

#[test]
fn every_module_opens_with_a_doc_line() {
    let mut findings = Vec::new();
    for (_, src) in src_dirs() {
        for file in files_under(&src).into_iter().filter(|f| f.extension().is_some_and(|e| e == "rs")) {
            let text = read(&file);
            if !text.starts_with("//!") {
                let first = text.lines().next().unwrap_or("");
                findings.push(format!(
                    "{}: opens with {first:?}, not a `//!` line saying what it holds",
                    rel(&file)
                ));
            }
        }
    }
    report("modules without a //! line", findings);
}

#[test]
fn the_engine_names_no_fleet_server_or_store() {
    let src = root().join("controller/src");
    let modules = cycles::modules(&src);
    let mut findings = Vec::new();
    for (module, file) in modules.iter().filter(|(m, _)| m.first().is_some_and(|m| m == "engine")) {
        for (line, path) in cycles::resolved_paths(&modules, module, &read(file)) {
            if let Some(first) = path.first().filter(|m| ["fleet", "server", "store"].contains(&m.as_str())) {
                let named = path.join("::");
                findings
                    .push(format!("{}:{line}: crate::{named} (`{first}` is above the engine)", rel(file)));
            }
        }
    }
    report("the engine depends on the controller's server side", findings);
}

#[test]
fn no_crate_has_a_file_level_import_cycle() {
    let mut findings = Vec::new();
    for (krate, src) in src_dirs() {
        let modules = cycles::modules(&src);
        for cycle in cycles::cycles(&modules) {
            let files: Vec<String> = cycle.cycle.iter().map(|m| rel(&modules[m])).collect();
            let mut finding = format!("{krate}: {} → {}", files.join(" → "), files[0]);
            if !cycle.also.is_empty() {
                let also: Vec<String> = cycle.also.iter().map(|m| rel(&modules[m])).collect();
                finding.push_str(&format!("\n    (on other cycles with these: {})", also.join(", ")));
            }
            findings.push(finding);
        }
    }
    report(
        "import cycles (each line: one cycle's files, each importing the next, the last the first)",
        findings,
    );
}

#[test]
fn every_path_architecture_md_names_exists() {
    let text = read(&root().join("ARCHITECTURE.md"));
    let known = repo_paths();
    let mut findings = Vec::new();
    for (line, path) in named_paths(&text) {
        // A path may be named from its crate (`engine/run.rs`, `fleet.rs`) or from the root (`tests/support/`).
        let exists = known.iter().any(|k| k == &path || k.ends_with(&format!("/{path}")));
        if !exists {
            findings.push(format!("ARCHITECTURE.md:{line}: `{path}` names nothing in the repository"));
        }
    }
    report("stale paths in ARCHITECTURE.md", findings);
}

/// Links to places outside the repository that the docs keep on purpose: none. A link outside goes stale
/// without any test noticing, and the docs must stand on their own in a checkout.
const EXTERNAL_LINKS_ALLOWED: &[&str] = &[];

#[test]
fn no_markdown_links_outside_the_repository() {
    let mut findings = Vec::new();
    for file in files_under(&root()).into_iter().filter(|f| f.extension().is_some_and(|e| e == "md")) {
        let text = read(&file);
        let mut fenced = false;
        for (n, line) in text.lines().enumerate() {
            if line.trim_start().starts_with("```") {
                fenced = !fenced;
                continue;
            }
            for url in external_links(line) {
                if !fenced && !EXTERNAL_LINKS_ALLOWED.contains(&url.as_str()) {
                    findings.push(format!("{}:{}: {url}", rel(&file), n + 1));
                }
            }
        }
    }
    report("links outside the repository", findings);
}

/// Loopback ports test sources may name, and why none of them is a port a user's service could hold for the
/// test: nothing listens there, or the address is data that is never bound or dialled, or it is bound only in a
/// network namespace the test makes. `None` as the file allows the port in every test source. Files under a
/// `tests/` directory are read whole (comments aside); in a source file's `#[cfg(test)]` part, where listen
/// addresses are mostly data a unit test renders or parses, only lines that bind (`bind(`, `TcpListener`).
const FIXED_PORTS_ALLOWED: &[(Option<&str>, u16, &str)] = &[
    (None, 1, "tcpmux: nothing listens, a dial is refused at once (the refusal is what is tested)"),
    (None, 2, "as port 1: a second upstream that refuses"),
    (None, 9, "discard: an upstream named in API data, never dialled"),
    (Some("proxy/tests/api/common.rs"), 26379, "a listen address in a Toxiproxy error message, never bound"),
    (Some("proxy/tests/fuzz_config.rs"), 6379, "an upstream in generated config text, never dialled"),
    (Some("proxy/tests/fuzz_config.rs"), 5432, "an upstream in generated config text, never dialled"),
    (Some("tests/proxy_config_errors.rs"), 6379, "an upstream in config files that fail to load"),
    (Some("tests/proxy_intercept.rs"), 8080, "the service inside the test's own network namespace"),
    (Some("tests/compat_python.rs"), 8474, "the client's hard-coded port, inside the test's own namespace"),
    (
        Some("controller/tests/experiment_valid.rs"),
        8080,
        "a URL in an experiment that is parsed, never fetched",
    ),
    (
        Some("controller/tests/run_proxies.rs"),
        40000,
        "a listen address in a fake server's answer, never bound",
    ),
];

#[test]
fn no_test_names_a_fixed_port_on_the_hosts_loopback() {
    let root = root();
    let mut findings = Vec::new();
    for file in files_under(&root).into_iter().filter(|f| f.extension().is_some_and(|e| e == "rs")) {
        let name = rel(&file);
        let in_tests = name.starts_with("tests/") || name.contains("/tests/") || name.ends_with("/tests.rs");
        let in_src = name.starts_with("src/") || name.contains("/src/");
        let text = read(&file);
        // Test sources: files under tests/, and the `#[cfg(test)]` part of a source file.
        let first_test_line = if in_tests {
            0
        } else if let Some(at) = text.find("#[cfg(test)]").filter(|_| in_src) {
            text[..at].lines().count()
        } else {
            continue;
        };
        for (n, line) in text.lines().enumerate().skip(first_test_line) {
            // Comments may name ports; a unit test's data (a listen address rendered, parsed) is only checked
            // where that line binds.
            let binds = line.contains("bind(") || line.contains("TcpListener");
            if line.trim_start().starts_with("//") || (!in_tests && !binds) || name == "tests/tidy.rs" {
                continue;
            }
            for port in loopback_ports(line) {
                let allowed =
                    FIXED_PORTS_ALLOWED.iter().any(|(f, p, _)| *p == port && f.is_none_or(|f| f == name));
                if !allowed {
                    findings.push(format!(
                        "{name}:{}: 127.0.0.1:{port} (bind port 0 and read the address)",
                        n + 1
                    ));
                }
            }
        }
    }
    report("fixed loopback ports in tests", findings);
}

// === helpers of the rules ===

/// Every file and directory of the repository, relative to its root; directories end with `/`.
fn repo_paths() -> BTreeSet<String> {
    let mut paths = BTreeSet::new();
    for file in files_under(&root()) {
        let name = rel(&file);
        let mut dir = name.as_str();
        while let Some((parent, _)) = dir.rsplit_once('/') {
            paths.insert(format!("{parent}/"));
            dir = parent;
        }
        paths.insert(name);
    }
    paths
}

/// The backticked repository paths of a Markdown text, with their line numbers: a file name with an extension
/// (`fleet.rs`, `engine/run.rs`, `chaos/v1/agent.proto`) or a directory (`toxics/`), outside code blocks.
/// Paths outside the repository (`../shared/DESIGN.md`, `/proc/...`) are not repository paths.
fn named_paths(text: &str) -> Vec<(usize, String)> {
    const EXTENSIONS: &[&str] = &["rs", "md", "proto", "toml", "py", "yaml", "yml", "json", "sh"];
    let mut found = Vec::new();
    let mut fenced = false;
    for (n, line) in text.lines().enumerate() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if fenced {
            continue;
        }
        for (i, token) in line.split('`').enumerate() {
            // Odd pieces are inside backticks.
            let plain = token.chars().all(|c| c.is_ascii_alphanumeric() || "_-./".contains(c));
            if i % 2 == 0 || !plain || token.starts_with('/') || token.starts_with("..") || token.is_empty() {
                continue;
            }
            let is_dir = token.ends_with('/') && token.len() > 1;
            let is_file = token
                .rsplit_once('.')
                .is_some_and(|(stem, ext)| !stem.is_empty() && EXTENSIONS.contains(&ext));
            if is_dir || is_file {
                found.push((n + 1, token.to_string()));
            }
        }
    }
    found
}

/// The `http://` and `https://` targets of one Markdown line's links: `[text](URL)`, `<URL>` and bare URLs.
fn external_links(line: &str) -> Vec<String> {
    let mut links = Vec::new();
    let mut rest = line;
    while let Some(at) = rest.find("http") {
        let candidate = &rest[at..];
        let is_url = candidate.starts_with("http://") || candidate.starts_with("https://");
        let boundary = rest[..at].chars().last().is_none_or(|c| !c.is_ascii_alphanumeric());
        if is_url && boundary {
            let end = candidate
                .find(|c: char| c.is_whitespace() || ")>]`\"'".contains(c))
                .unwrap_or(candidate.len());
            let url = &candidate[..end];
            // Loopback and example addresses are examples of what to type, not links.
            let host = url.split("://").nth(1).unwrap_or("").split(['/', ':']).next().unwrap_or("");
            let local = ["127.0.0.1", "localhost", "0.0.0.0", "[::1]", "example.invalid", "HOST", "host"]
                .contains(&host)
                || host.is_empty()
                || host.starts_with('{')
                || host.starts_with('$')
                || host.chars().all(|c| c.is_ascii_uppercase() || c == '_' || c == '-');
            if !local {
                links.push(url.to_string());
            }
            rest = &candidate[end..];
        } else {
            rest = &rest[at + 4..];
        }
    }
    links
}

/// The ports of `127.0.0.1:PORT` literals (port 1 and up) on one line.
fn loopback_ports(line: &str) -> Vec<u16> {
    let mut ports = Vec::new();
    for (at, _) in line.match_indices("127.0.0.1:") {
        let digits: String = line[at + 10..].chars().take_while(char::is_ascii_digit).collect();
        if let Ok(port) = digits.parse::<u16>()
            && port != 0
        {
            ports.push(port);
        }
    }
    ports
}

/// File-level import cycles, as /work/tools/cycles.py defines them, in Rust: a module is one file; a file
/// imports another when it names a path into it (`crate::a::b`, `super::b`, `self::b`, or a child module it
/// declares by the child's name); a file naming its own ancestors is no edge (a child may use its parents).
mod cycles {
    use super::*;

    /// Module path (`engine::run`, empty for the crate root) → its file.
    pub type Modules = BTreeMap<Vec<String>, PathBuf>;

    /// Every `.rs` file under `src`, by module path: `a/b.rs` and `a/b/mod.rs` are `a::b`; `lib.rs`/`main.rs`
    /// are the root.
    pub fn modules(src: &Path) -> Modules {
        let mut modules = Modules::new();
        for file in files_under(src).into_iter().filter(|f| f.extension().is_some_and(|e| e == "rs")) {
            let relative = file.strip_prefix(src).unwrap().with_extension("");
            let mut path: Vec<String> =
                relative.components().map(|c| c.as_os_str().to_string_lossy().into_owned()).collect();
            if path.last().is_some_and(|last| ["mod", "lib", "main"].contains(&last.as_str())) {
                path.pop();
            }
            // The root is lib.rs when a crate has both (main.rs is then a separate crate of the package).
            if path.is_empty() && modules.contains_key(&path) && file.ends_with("main.rs") {
                continue;
            }
            modules.insert(path, file);
        }
        modules
    }

    /// A file's text without its inline `#[cfg(test)] mod tests { ... }` (a test may import anything).
    fn without_tests(text: &str) -> &str {
        let mut at = 0;
        while let Some(found) = text[at..].find("#[cfg(test)]") {
            let start = at + found;
            if text[start + 12..].trim_start().starts_with("mod tests {") {
                return &text[..start];
            }
            at = start + 12;
        }
        text
    }

    /// The paths that start with the keyword `root` (`crate`, `super`, `self`, or a child module's name), each
    /// with the byte offset where it starts; the keyword itself is dropped; `super::super::x` keeps its second
    /// `super`.
    fn rooted_paths(text: &str, root: &str) -> Vec<(usize, Vec<String>)> {
        let bytes = text.as_bytes();
        let mut found = Vec::new();
        let needle = format!("{root}::");
        for (at, _) in text.match_indices(&needle) {
            let before = text[..at].chars().last();
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':') {
                continue;
            }
            let mut trees = Vec::new();
            let mut cursor = at + needle.len();
            parse_tree(bytes, &mut cursor, Vec::new(), &mut trees);
            found.extend(trees.into_iter().filter(|p| !p.is_empty()).map(|p| (at, p)));
        }
        found
    }

    /// Reads a use tree at `cursor` (`a::b`, `a::{b, c::d}`, `{a, b}`), appending each full path to `out`.
    fn parse_tree(bytes: &[u8], cursor: &mut usize, prefix: Vec<String>, out: &mut Vec<Vec<String>>) {
        let mut path = prefix;
        loop {
            skip_space(bytes, cursor);
            if bytes.get(*cursor) == Some(&b'{') {
                *cursor += 1;
                loop {
                    skip_space(bytes, cursor);
                    match bytes.get(*cursor) {
                        Some(b'}') => {
                            *cursor += 1;
                            return;
                        }
                        Some(b',') => *cursor += 1,
                        None => return,
                        _ => {
                            let before = *cursor;
                            parse_tree(bytes, cursor, path.clone(), out);
                            if *cursor == before {
                                *cursor += 1; // not a path (`*`, `self as x`...): step over it
                            }
                        }
                    }
                }
            }
            let start = *cursor;
            while bytes.get(*cursor).is_some_and(|b| b.is_ascii_alphanumeric() || *b == b'_') {
                *cursor += 1;
            }
            if *cursor == start {
                out.push(path);
                return;
            }
            path.push(String::from_utf8_lossy(&bytes[start..*cursor]).into_owned());
            if bytes.get(*cursor..*cursor + 2) == Some(b"::") {
                *cursor += 2;
            } else {
                out.push(path);
                return;
            }
        }
    }

    fn skip_space(bytes: &[u8], cursor: &mut usize) {
        while bytes.get(*cursor).is_some_and(u8::is_ascii_whitespace) {
            *cursor += 1;
        }
    }

    /// Every module path `text` (the text of `module`) names, resolved from the crate root, with its line number:
    /// `crate::a::b`, `self::b`, `super::b` (`super::super::b`...), and `child::b` for a `mod child;` it declares.
    pub fn resolved_paths(modules: &Modules, module: &[String], text: &str) -> Vec<(usize, Vec<String>)> {
        let mut targets: Vec<(usize, Vec<String>)> = Vec::new();
        targets.extend(rooted_paths(text, "crate"));
        for (at, path) in rooted_paths(text, "self") {
            targets.push((at, module.iter().cloned().chain(path).collect()));
        }
        for (at, path) in rooted_paths(text, "super") {
            let mut base: Vec<String> = module[..module.len().saturating_sub(1)].to_vec();
            let mut rest = path.into_iter().peekable();
            while rest.peek().is_some_and(|s| s == "super") {
                rest.next();
                base.pop();
            }
            targets.push((at, base.into_iter().chain(rest).collect()));
        }
        // A parent naming its child module by the child's name (`child::Thing`).
        for child in declared_children(text) {
            let mut child_path = module.to_vec();
            child_path.push(child.clone());
            if modules.contains_key(&child_path) {
                for (at, path) in rooted_paths(text, &child) {
                    targets.push((at, child_path.iter().cloned().chain(path).collect()));
                }
            }
        }
        targets.into_iter().map(|(at, path)| (text[..at].lines().count().max(1), path)).collect()
    }

    /// The modules `module` imports outside its inline tests, as module paths of files.
    fn edges(modules: &Modules, module: &[String]) -> BTreeSet<Vec<String>> {
        let text = read(&modules[module]);
        let targets = resolved_paths(modules, module, without_tests(&text)).into_iter().map(|(_, path)| path);
        let mut edges = BTreeSet::new();
        for target in targets {
            // The longest prefix of the path that is a file.
            let file = (1..=target.len()).rev().map(|n| &target[..n]).find(|p| modules.contains_key(*p));
            let Some(file) = file else { continue };
            let is_ancestor = file.len() < module.len() && module.starts_with(file);
            if file != module && !is_ancestor {
                edges.insert(file.to_vec());
            }
        }
        edges
    }

    /// The names of `mod NAME;` declarations (files, not inline modules).
    fn declared_children(text: &str) -> Vec<String> {
        text.lines()
            .filter_map(|line| {
                let line = line.trim_start();
                let line =
                    line.strip_prefix("pub(crate) ").or(line.strip_prefix("pub(super) ")).unwrap_or(line);
                let line = line.strip_prefix("pub ").unwrap_or(line);
                let name = line.strip_prefix("mod ")?.strip_suffix(';')?;
                name.chars().all(|c| c.is_alphanumeric() || c == '_').then(|| name.to_string())
            })
            .collect()
    }

    /// The strongly connected components of more than one module (Tarjan), each as one cycle through it and
    /// the rest, so a message reads as "this imports that".
    pub fn cycles(modules: &Modules) -> Vec<Cycle> {
        let graph: BTreeMap<Vec<String>, BTreeSet<Vec<String>>> =
            modules.keys().map(|m| (m.clone(), edges(modules, m))).collect();
        let mut state = Tarjan {
            graph: &graph,
            index: BTreeMap::new(),
            low: BTreeMap::new(),
            stack: Vec::new(),
            next: 0,
            found: Vec::new(),
        };
        for module in graph.keys() {
            if !state.index.contains_key(module) {
                state.visit(module);
            }
        }
        state.found.into_iter().map(|component| walk(&graph, component)).collect()
    }

    /// One shortest cycle through the component's first module (each module importing the next, the last the
    /// first), then the component's other modules, which lie on other cycles through these.
    fn walk(graph: &BTreeMap<Vec<String>, BTreeSet<Vec<String>>>, mut component: Vec<Vec<String>>) -> Cycle {
        component.sort();
        let members: BTreeSet<&Vec<String>> = component.iter().collect();
        let start = &component[0];
        // Breadth-first from `start` inside the component, until an edge leads back to it.
        let mut came_from: BTreeMap<&Vec<String>, &Vec<String>> = BTreeMap::new();
        let mut queue = std::collections::VecDeque::from([start]);
        let mut last = None;
        while let Some(at) = queue.pop_front() {
            if graph[at].contains(start) {
                last = Some(at);
                break;
            }
            for next in graph[at].iter().filter(|n| members.contains(n) && *n != start) {
                if !came_from.contains_key(next) {
                    came_from.insert(next, at);
                    queue.push_back(next);
                }
            }
        }
        let mut cycle = Vec::new();
        let mut at = last;
        while let Some(module) = at {
            cycle.push(module.clone());
            at = came_from.get(module).copied();
        }
        cycle.reverse();
        let also = component.iter().filter(|m| !cycle.contains(m)).cloned().collect();
        Cycle { cycle, also }
    }

    /// One strongly connected component of the import graph.
    pub struct Cycle {
        /// Modules each importing the next, the last importing the first.
        pub cycle: Vec<Vec<String>>,
        /// The component's other modules.
        pub also: Vec<Vec<String>>,
    }

    struct Tarjan<'a> {
        graph: &'a BTreeMap<Vec<String>, BTreeSet<Vec<String>>>,
        index: BTreeMap<Vec<String>, usize>,
        low: BTreeMap<Vec<String>, usize>,
        stack: Vec<Vec<String>>,
        next: usize,
        found: Vec<Vec<Vec<String>>>,
    }

    impl Tarjan<'_> {
        fn visit(&mut self, v: &Vec<String>) {
            self.index.insert(v.clone(), self.next);
            self.low.insert(v.clone(), self.next);
            self.next += 1;
            self.stack.push(v.clone());
            for w in &self.graph[v] {
                if !self.index.contains_key(w) {
                    self.visit(w);
                    let low = self.low[v].min(self.low[w]);
                    self.low.insert(v.clone(), low);
                } else if self.stack.contains(w) {
                    let low = self.low[v].min(self.index[w]);
                    self.low.insert(v.clone(), low);
                }
            }
            if self.low[v] == self.index[v] {
                let mut component = Vec::new();
                while let Some(w) = self.stack.pop() {
                    let done = &w == v;
                    component.push(w);
                    if done {
                        break;
                    }
                }
                if component.len() > 1 {
                    self.found.push(component);
                }
            }
        }
    }
}

// === the rules' own checks ===

/// The cycle finder on a made-up crate: a cycle through a grouped import and a child's name is found and
/// named by its files; a child using its parent is not an edge.
#[test]
fn the_cycle_rule_finds_a_planted_cycle_and_names_its_files() {
    let dir = std::env::temp_dir().join(format!("chaos-tidy-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let write = |name: &str, text: &str| {
        let path = dir.join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    };
    write("lib.rs", "//! root\nmod a;\nmod b;\nmod c;\n");
    write("a/mod.rs", "//! a\nmod inner;\nuse crate::{b::Thing, c};\npub fn f() { inner::g() }\n");
    write("a/inner.rs", "//! a child using its parent: no edge\nuse super::f;\n");
    write("b.rs", "//! b\nuse crate::a::f;\npub struct Thing;\n");
    write("c.rs", "//! c\n#[cfg(test)]\nmod tests {\n    use crate::a::f;\n}\n");
    let modules = cycles::modules(&dir);
    let found = cycles::cycles(&modules);
    let names: Vec<Vec<String>> =
        found.iter().map(|c| c.cycle.iter().map(|m| m.join("::")).collect()).collect();
    assert_eq!(names, [["a", "b"]], "only a ↔ b is a cycle (c's import is in its tests)");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_path_and_link_readers_see_what_the_docs_write() {
    let text = "- `engine/run.rs`: `execute`\n```\n`not/read.rs`\n```\n- `toxics/`, `../shared/DESIGN.md`, `a b.rs`\n";
    assert_eq!(named_paths(text), [(1, "engine/run.rs".to_string()), (5, "toxics/".to_string())]);
    let line =
        "see [rust-analyzer](https://github.com/rust-lang/rust-analyzer) and http://127.0.0.1:8474/proxies";
    assert_eq!(external_links(line), ["https://github.com/rust-lang/rust-analyzer"]);
    assert_eq!(loopback_ports(r#"bind("127.0.0.1:0") then "127.0.0.1:8474", 127.0.0.1:1"#), [8474, 1]);
}
