//! Layers point one way: in every directory of `src/` (the crate root,
//! `src/payments`, `src/provider/sandbox`, …) the child modules — a file
//! `x.rs` or a directory `x/` — must not refer to each other in a circle.
//!
//! The check reads the source text, not the compiler's view, so it needs
//! no tool beyond the standard library. A child `a` refers to its sibling
//! `b` when code anywhere under `a` names `b` by a `crate::…`, `super::…` or
//! `self::…` path, in a `use` (grouped imports included) or inline. A path
//! through a `use` re-export (`crate::Config` → `config::Config`) counts for
//! the module it leads to. Comments, string literals and everything after a
//! file-level `#[cfg(test)]` are not read: unit tests may reach anywhere.
//! `src/main.rs` is its own crate (it sees the library as `payorch::`) and is
//! not part of the graph.
//!
//! What it does not see: bare paths through a name a module imported
//! (`use crate::events; events::x()` counts once, at the `use`), glob
//! imports (`use super::*`), macros that build paths, and a child that
//! uses an item its parent's `mod.rs` defines (not a sibling edge).

use std::{
    collections::{BTreeMap, BTreeSet, HashMap, VecDeque},
    fmt,
    path::Path,
};

/// A module's path from the crate root: `["provider", "sandbox"]`.
type ModulePath = Vec<String>;

#[test]
fn module_graphs_are_acyclic() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    read_tree(&src, &src, &mut files);
    assert!(
        files.len() > 10,
        "found only {} files under {}",
        files.len(),
        src.display()
    );
    let cycles = Crate::read(&files).cycles();
    if !cycles.is_empty() {
        let listed: Vec<String> = cycles.iter().map(ToString::to_string).collect();
        panic!(
            "{} module cycle(s); layers must point one way:\n{}",
            cycles.len(),
            listed.join("\n")
        );
    }
}

/// Every `.rs` file under `dir`, as (path relative to `src`, text).
fn read_tree(root: &Path, dir: &Path, out: &mut Vec<(String, String)>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.expect("a directory entry").path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            read_tree(root, &path, out);
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            let relative = path.strip_prefix(root).expect("under src");
            let text = std::fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            out.push((relative.to_string_lossy().replace('\\', "/"), text));
        }
    }
}

/// The module a file under `src/` is, or `None` for another crate's root.
fn module_of(relative: &str) -> Option<ModulePath> {
    let stem = relative.strip_suffix(".rs")?;
    let mut parts: Vec<String> = stem.split('/').map(str::to_owned).collect();
    match parts.as_slice() {
        [only] if only == "lib" => return Some(Vec::new()),
        [only] if only == "main" => return None,
        [first, ..] if first == "bin" => return None,
        _ => {}
    }
    if parts.last().is_some_and(|last| last == "mod") {
        parts.pop();
    }
    Some(parts)
}

/// Where a reference was written, to show why an edge exists.
#[derive(Clone, Debug)]
struct Witness {
    file: String,
    line: usize,
    path: String,
}

/// One file's references to other modules and its `use` bindings.
struct Reference {
    from: ModulePath,
    to: ModulePath,
    witness: Witness,
}

#[derive(Default)]
struct Crate {
    modules: BTreeSet<ModulePath>,
    /// Per module, what each name it `use`s stands for.
    bindings: HashMap<ModulePath, HashMap<String, ModulePath>>,
    references: Vec<Reference>,
}

/// A cycle in one directory's graph, with where each step is written.
#[derive(Debug)]
struct Cycle {
    directory: String,
    /// The children in order; the last one refers to the first.
    children: Vec<String>,
    steps: Vec<Witness>,
}

impl fmt::Display for Cycle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.directory, self.children.join(" -> "))?;
        write!(f, " -> {}", self.children[0])?;
        for (i, step) in self.steps.iter().enumerate() {
            let next = &self.children[(i + 1) % self.children.len()];
            write!(
                f,
                "\n    {} -> {next}: {}:{} {}",
                self.children[i], step.file, step.line, step.path
            )?;
        }
        Ok(())
    }
}

impl Crate {
    /// `files`: (path relative to `src/`, text).
    fn read(files: &[(String, String)]) -> Crate {
        let mut krate = Crate::default();
        let mut parsed = Vec::new();
        for (file, text) in files {
            let Some(module) = module_of(file) else {
                continue;
            };
            // Every ancestor is a module too (a directory without mod.rs
            // is still one for the graph).
            for len in 0..=module.len() {
                krate.modules.insert(module[..len].to_vec());
            }
            parsed.push((file, module, uses_and_paths(&tokens(&strip(text)))));
        }
        for (file, module, found) in parsed {
            for found in found {
                let Some(to) = krate.resolve(&module, &found.segments) else {
                    continue;
                };
                if found.is_use
                    && let Some(name) = found.binding()
                {
                    krate
                        .bindings
                        .entry(module.clone())
                        .or_default()
                        .insert(name, to.clone());
                }
                if found.anchored() {
                    krate.references.push(Reference {
                        from: module.clone(),
                        to,
                        witness: Witness {
                            file: format!("src/{file}"),
                            line: found.line,
                            path: found.segments.join("::"),
                        },
                    });
                }
            }
        }
        krate
    }

    /// `segments` as seen from `module`, from the crate root; a path
    /// that does not start at `crate`, `self`, `super` or one of the
    /// module's children (an outside crate) is `None`.
    fn resolve(&self, module: &[String], segments: &[String]) -> Option<ModulePath> {
        let (mut base, rest) = match segments.first()?.as_str() {
            "crate" => (Vec::new(), &segments[1..]),
            "self" => (module.to_vec(), &segments[1..]),
            "super" => {
                let mut base = module.to_vec();
                let mut rest = segments;
                while rest.first().is_some_and(|s| s == "super") {
                    base.pop()?;
                    rest = &rest[1..];
                }
                (base, rest)
            }
            child => {
                let mut candidate = module.to_vec();
                candidate.push(child.to_owned());
                if !self.modules.contains(&candidate) {
                    return None;
                }
                (module.to_vec(), segments)
            }
        };
        base.extend(rest.iter().filter(|s| *s != "self").cloned());
        Some(base)
    }

    /// `path` followed through `use` bindings until it names a module or
    /// an item not re-exported.
    fn canonical(&self, path: &[String]) -> ModulePath {
        let mut path = path.to_vec();
        'follow: for _ in 0..16 {
            for i in 0..path.len() {
                if self.modules.contains(&path[..=i]) {
                    continue;
                }
                let target = self
                    .bindings
                    .get(&path[..i])
                    .and_then(|names| names.get(&path[i]));
                match target {
                    Some(target) if *target != path[..=i] => {
                        let mut next = target.clone();
                        next.extend_from_slice(&path[i + 1..]);
                        path = next;
                        continue 'follow;
                    }
                    _ => return path,
                }
            }
            return path;
        }
        path
    }

    /// Each directory's sibling graph: directory → child → (child it
    /// refers to → first place it does so).
    fn graphs(&self) -> BTreeMap<ModulePath, BTreeMap<String, BTreeMap<String, Witness>>> {
        let mut graphs: BTreeMap<ModulePath, BTreeMap<String, BTreeMap<String, Witness>>> =
            BTreeMap::new();
        for reference in &self.references {
            let to = self.canonical(&reference.to);
            let from = &reference.from;
            // Every level where `from` and `to` part ways below a common
            // directory: only the first such level is a sibling step.
            let common = from.iter().zip(&to).take_while(|(a, b)| a == b).count();
            if common >= from.len() || common >= to.len() {
                continue;
            }
            let directory = from[..common].to_vec();
            let (a, b) = (&from[common], &to[common]);
            let mut child = directory.clone();
            child.push(b.clone());
            if !self.modules.contains(&child) {
                continue;
            }
            graphs
                .entry(directory)
                .or_default()
                .entry(a.clone())
                .or_default()
                .entry(b.clone())
                .or_insert_with(|| reference.witness.clone());
        }
        graphs
    }

    /// Every cycle, at least one through each edge that is on one.
    fn cycles(&self) -> Vec<Cycle> {
        let mut cycles = Vec::new();
        for (directory, graph) in self.graphs() {
            let name = if directory.is_empty() {
                "src".to_owned()
            } else {
                format!("src/{}", directory.join("/"))
            };
            let mut seen = BTreeSet::new();
            for (a, targets) in &graph {
                for b in targets.keys() {
                    let Some(back) = shortest_path(&graph, b, a) else {
                        continue;
                    };
                    // a -> b -> … -> a, rotated to start at its least child.
                    let mut children = vec![a.clone()];
                    children.extend(back[..back.len() - 1].iter().cloned());
                    let start = children
                        .iter()
                        .enumerate()
                        .min_by_key(|(_, c)| *c)
                        .map(|(i, _)| i)
                        .unwrap_or(0);
                    children.rotate_left(start);
                    if !seen.insert(children.clone()) {
                        continue;
                    }
                    let steps = (0..children.len())
                        .map(|i| graph[&children[i]][&children[(i + 1) % children.len()]].clone())
                        .collect();
                    cycles.push(Cycle {
                        directory: name.clone(),
                        children,
                        steps,
                    });
                }
            }
        }
        cycles
    }
}

/// The shortest path `from` → … → `to` (both included), breadth first.
fn shortest_path(
    graph: &BTreeMap<String, BTreeMap<String, Witness>>,
    from: &str,
    to: &str,
) -> Option<Vec<String>> {
    let mut came_from: HashMap<&str, &str> = HashMap::new();
    let mut queue = VecDeque::from([from]);
    let mut visited = BTreeSet::from([from]);
    while let Some(node) = queue.pop_front() {
        if node == to {
            let mut path = vec![to.to_owned()];
            let mut at = to;
            while at != from {
                at = came_from[at];
                path.push(at.to_owned());
            }
            path.reverse();
            return Some(path);
        }
        for next in graph.get(node).into_iter().flat_map(BTreeMap::keys) {
            if visited.insert(next.as_str()) {
                came_from.insert(next.as_str(), node);
                queue.push_back(next.as_str());
            }
        }
    }
    None
}

/// The code that counts: the text before a file-level `#[cfg(test)]`.
fn strip(text: &str) -> String {
    let mut kept = String::new();
    for line in text.lines() {
        if line.trim_end() == "#[cfg(test)]" {
            break;
        }
        kept.push_str(line);
        kept.push('\n');
    }
    kept
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Ident(String),
    PathSep,
    Open,
    Close,
    Comma,
    Other(char),
}

/// Identifiers and punctuation with their line; comments and string and
/// character literals are dropped.
fn tokens(code: &str) -> Vec<(Token, usize)> {
    let chars: Vec<char> = code.chars().collect();
    let mut out = Vec::new();
    let (mut i, mut line) = (0, 1);
    let at = |i: usize| chars.get(i).copied().unwrap_or('\0');
    while i < chars.len() {
        let c = chars[i];
        match c {
            '\n' => {
                line += 1;
                i += 1;
            }
            c if c.is_whitespace() => i += 1,
            '/' if at(i + 1) == '/' => {
                while i < chars.len() && chars[i] != '\n' {
                    i += 1;
                }
            }
            '/' if at(i + 1) == '*' => {
                let mut depth = 0;
                while i < chars.len() {
                    if chars[i] == '/' && at(i + 1) == '*' {
                        depth += 1;
                        i += 2;
                    } else if chars[i] == '*' && at(i + 1) == '/' {
                        depth -= 1;
                        i += 2;
                        if depth == 0 {
                            break;
                        }
                    } else {
                        if chars[i] == '\n' {
                            line += 1;
                        }
                        i += 1;
                    }
                }
            }
            '"' => i = skip_string(&chars, i + 1, &mut line),
            'r' | 'b' if raw_string_start(&chars, i).is_some() => {
                let (hashes, open) = raw_string_start(&chars, i).expect("checked");
                i = open + 1;
                while i < chars.len() {
                    if chars[i] == '"' && (1..=hashes).all(|h| at(i + h) == '#') {
                        i += hashes + 1;
                        break;
                    }
                    if chars[i] == '\n' {
                        line += 1;
                    }
                    i += 1;
                }
            }
            'b' if at(i + 1) == '"' => i = skip_string(&chars, i + 2, &mut line),
            'b' if at(i + 1) == '\'' => i = skip_char(&chars, i + 1),
            '\'' => {
                // A character literal, or a lifetime (`'a`), which is skipped
                // as punctuation.
                if at(i + 1) == '\\' || at(i + 2) == '\'' {
                    i = skip_char(&chars, i);
                } else {
                    i += 1;
                }
            }
            c if c.is_alphabetic() || c == '_' => {
                let start = i;
                while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                    i += 1;
                }
                out.push((Token::Ident(chars[start..i].iter().collect()), line));
            }
            c if c.is_ascii_digit() => {
                while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                    i += 1;
                }
            }
            ':' if at(i + 1) == ':' => {
                out.push((Token::PathSep, line));
                i += 2;
            }
            '{' => {
                out.push((Token::Open, line));
                i += 1;
            }
            '}' => {
                out.push((Token::Close, line));
                i += 1;
            }
            ',' => {
                out.push((Token::Comma, line));
                i += 1;
            }
            other => {
                out.push((Token::Other(other), line));
                i += 1;
            }
        }
    }
    out
}

/// Past the string whose body starts at `i`.
fn skip_string(chars: &[char], mut i: usize, line: &mut usize) -> usize {
    while i < chars.len() {
        match chars[i] {
            '\\' => i += 2,
            '"' => return i + 1,
            '\n' => {
                *line += 1;
                i += 1;
            }
            _ => i += 1,
        }
    }
    i
}

/// Past the character literal whose opening quote is at `i`.
fn skip_char(chars: &[char], mut i: usize) -> usize {
    i += 1;
    while i < chars.len() {
        match chars[i] {
            '\\' => i += 2,
            '\'' => return i + 1,
            _ => i += 1,
        }
    }
    i
}

/// For `r"`, `r#"`, `br##"` … at `i`: the number of `#` and where the
/// opening quote is.
fn raw_string_start(chars: &[char], i: usize) -> Option<(usize, usize)> {
    let mut j = i;
    if chars.get(j) == Some(&'b') {
        j += 1;
    }
    if chars.get(j) != Some(&'r') {
        return None;
    }
    // Not the end of an identifier such as `bar"`.
    if i > 0 && (chars[i - 1].is_alphanumeric() || chars[i - 1] == '_') {
        return None;
    }
    j += 1;
    let hashes = chars[j..].iter().take_while(|c| **c == '#').count();
    (chars.get(j + hashes) == Some(&'"')).then_some((hashes, j + hashes))
}

/// One path the code names: `crate::events::record`, or each leaf of a
/// grouped `use`.
#[derive(Debug, PartialEq)]
struct Found {
    segments: Vec<String>,
    alias: Option<String>,
    is_use: bool,
    line: usize,
}

impl Found {
    /// Whether the path starts at `crate`, `self` or `super` (a bare path
    /// in a `use` may name a child module, and only counts as a binding).
    fn anchored(&self) -> bool {
        matches!(
            self.segments.first().map(String::as_str),
            Some("crate" | "self" | "super")
        )
    }

    /// The name a `use` brings into scope.
    fn binding(&self) -> Option<String> {
        if let Some(alias) = &self.alias {
            return (alias != "_").then(|| alias.clone());
        }
        let mut named = self.segments.iter().rev().filter(|s| *s != "self");
        let last = named.next()?;
        (!matches!(last.as_str(), "crate" | "super" | "*")).then(|| last.clone())
    }
}

/// Every `use` tree and every inline `crate::`/`self::`/`super::` path.
fn uses_and_paths(tokens: &[(Token, usize)]) -> Vec<Found> {
    let ident = |i: usize| match tokens.get(i) {
        Some((Token::Ident(s), _)) => Some(s.as_str()),
        _ => None,
    };
    let mut found = Vec::new();
    let mut i = 0;
    while i < tokens.len() {
        let line = tokens[i].1;
        let after_sep = i > 0 && tokens[i - 1].0 == Token::PathSep;
        match ident(i) {
            Some("use") => {
                let (trees, next) = parse_tree(tokens, i + 1, Vec::new());
                found.extend(trees.into_iter().map(|(segments, alias)| Found {
                    segments,
                    alias,
                    is_use: true,
                    line,
                }));
                i = next.max(i + 1);
            }
            Some("crate" | "self" | "super")
                if !after_sep && tokens.get(i + 1).map(|t| &t.0) == Some(&Token::PathSep) =>
            {
                let (trees, next) = parse_tree(tokens, i, Vec::new());
                found.extend(trees.into_iter().map(|(segments, alias)| Found {
                    segments,
                    alias,
                    is_use: false,
                    line,
                }));
                i = next.max(i + 1);
            }
            _ => i += 1,
        }
    }
    found
}

/// A path tree at `i` under `prefix`: each leaf path with its alias, and
/// where the tree ends.
#[allow(clippy::type_complexity)]
fn parse_tree(
    tokens: &[(Token, usize)],
    mut i: usize,
    prefix: Vec<String>,
) -> (Vec<(Vec<String>, Option<String>)>, usize) {
    let token = |i: usize| tokens.get(i).map(|t| &t.0);
    let mut segments = prefix;
    let mut out = Vec::new();
    loop {
        match token(i) {
            Some(Token::Ident(s)) => {
                segments.push(s.clone());
                i += 1;
                if token(i) == Some(&Token::PathSep) {
                    i += 1;
                    continue;
                }
                let mut alias = None;
                if token(i) == Some(&Token::Ident("as".into()))
                    && let Some(Token::Ident(name)) = token(i + 1)
                {
                    alias = Some(name.clone());
                    i += 2;
                }
                out.push((segments, alias));
                return (out, i);
            }
            Some(Token::Open) => {
                i += 1;
                loop {
                    match token(i) {
                        None => return (out, i),
                        Some(Token::Close) => return (out, i + 1),
                        Some(Token::Comma) => i += 1,
                        Some(_) => {
                            let (inner, next) = parse_tree(tokens, i, segments.clone());
                            out.extend(inner);
                            // Skip what a tree does not read (`*`, a stray
                            // token) up to the next item.
                            i = next.max(i + 1);
                            while !matches!(token(i), None | Some(Token::Comma | Token::Close)) {
                                i += 1;
                            }
                        }
                    }
                }
            }
            Some(Token::Other('*')) => {
                segments.push("*".into());
                out.push((segments, None));
                return (out, i + 1);
            }
            _ => {
                // `crate::x::<T>`, `crate::x;` …: the path so far.
                if !segments.is_empty() {
                    out.push((segments, None));
                }
                return (out, i);
            }
        }
    }
}

// The checker's own tests, on small made-up crates.

fn cycles_of(files: &[(&str, &str)]) -> Vec<String> {
    let files: Vec<(String, String)> = files
        .iter()
        .map(|(path, text)| (path.to_string(), text.to_string()))
        .collect();
    Crate::read(&files)
        .cycles()
        .iter()
        .map(|cycle| format!("{}: {}", cycle.directory, cycle.children.join(" -> ")))
        .collect()
}

#[test]
fn a_cycle_between_top_level_modules_is_found() {
    let cycles = cycles_of(&[
        ("lib.rs", "pub mod config;\npub mod queue;\n"),
        ("config.rs", "use crate::queue::RetryPolicy;\n"),
        ("queue/mod.rs", "mod amqp;\n"),
        (
            "queue/amqp.rs",
            "fn f() { let c = crate::config::Config::default(); }\n",
        ),
    ]);
    assert_eq!(cycles, ["src: config -> queue"]);
}

#[test]
fn a_dag_passes() {
    let cycles = cycles_of(&[
        ("lib.rs", "pub mod domain;\npub mod http;\npub mod store;\n"),
        ("domain.rs", "use std::fmt;\n"),
        ("store.rs", "use crate::domain::Amount;\n"),
        (
            "http/mod.rs",
            "use crate::{domain::Amount, store::save};\nmod a;\nmod b;\n",
        ),
        ("http/a.rs", "use super::b::thing;\n"),
        ("http/b.rs", "use crate::store;\n"),
    ]);
    assert!(cycles.is_empty(), "{cycles:?}");
}

#[test]
fn a_grouped_multi_line_import_is_read() {
    let cycles = cycles_of(&[
        ("lib.rs", "pub mod events;\npub mod http;\n"),
        (
            "events.rs",
            "use crate::{\n    domain::{\n        Amount,\n        Currency,\n    },\n    http::{payments::{PaymentView, self}, refunds},\n};\n",
        ),
        ("http/mod.rs", "pub mod payments;\n"),
        (
            "http/payments.rs",
            "pub fn f() { crate::events::record(1); }\n",
        ),
    ]);
    assert_eq!(cycles, ["src: events -> http"]);
}

#[test]
fn sibling_paths_resolve_at_their_own_directory() {
    let cycles = cycles_of(&[
        ("lib.rs", "pub mod provider;\n"),
        ("provider/mod.rs", "mod sandbox;\n"),
        ("provider/sandbox/mod.rs", "mod state;\nmod refunds;\n"),
        ("provider/sandbox/state.rs", "use super::refunds::Refund;\n"),
        (
            "provider/sandbox/refunds.rs",
            "fn f() { crate::provider::sandbox::state::State::new(); }\n",
        ),
    ]);
    assert_eq!(cycles, ["src/provider/sandbox: refunds -> state"]);
}

#[test]
fn self_paths_in_mod_rs_and_re_exports_are_followed() {
    // `crate::Config` is `config::Config` through lib.rs; `self::` in
    // http/mod.rs is http's own child.
    let cycles = cycles_of(&[
        (
            "lib.rs",
            "pub mod config;\npub mod http;\npub use config::Config;\n",
        ),
        ("config.rs", "use crate::http::Limits;\n"),
        (
            "http/mod.rs",
            "mod limits;\npub use self::limits::Limits;\n",
        ),
        ("http/limits.rs", "fn f(c: &crate::Config) {}\n"),
    ]);
    assert_eq!(cycles, ["src: config -> http"]);
}

#[test]
fn comments_strings_and_unit_tests_are_not_read() {
    let cycles = cycles_of(&[
        ("lib.rs", "pub mod a;\npub mod b;\n"),
        ("a.rs", "use crate::b::X;\n"),
        (
            "b.rs",
            "// use crate::a::Y;\n/// crate::a::doc\n//! crate::a\n/* crate::a::Z */\nconst S: &str = \"crate::a::W\";\nconst R: &str = r#\"crate::a::V\"#;\nfn f<'a>(x: &'a str) -> char { 'c' }\n#[cfg(test)]\nmod tests {\n    use crate::a::Y;\n}\n",
        ),
    ]);
    assert!(cycles.is_empty(), "{cycles:?}");
}

#[test]
fn a_cycle_is_printed_as_a_path_with_its_steps() {
    let files = [
        (
            "lib.rs".to_owned(),
            "pub mod a;\npub mod b;\npub mod c;\n".to_owned(),
        ),
        ("a.rs".to_owned(), "use super::b;\n".to_owned()),
        ("b.rs".to_owned(), "\nuse crate::c::{self};\n".to_owned()),
        ("c.rs".to_owned(), "fn f() { crate::a::g() }\n".to_owned()),
    ];
    let cycles = Crate::read(&files).cycles();
    assert_eq!(cycles.len(), 1);
    assert_eq!(
        cycles[0].to_string(),
        "src: a -> b -> c -> a\n    a -> b: src/a.rs:1 super::b\n    b -> c: src/b.rs:2 crate::c::self\n    c -> a: src/c.rs:1 crate::a::g"
    );
}
