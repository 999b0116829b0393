//! The crate's structure, as docs/DESIGN.md ("Layers") and `src/lib.rs` state it, checked
//! on the source: every `crate::` path (and `ctgate::` in `main.rs`) a file names points
//! to its own layer or a lower one, and no files name each other in a circle (a module's
//! `mod.rs` naming its own children is the one allowed back edge).
//!
//! Paths are read from the code, comments left out: `use` lines, grouped imports
//! (`use crate::{a::b, c}`) and paths written inline (`crate::wire::parse::proto::TCP`),
//! and `super::` paths resolved against the file's module. Test code counts too, except
//! the test-only helper modules that sit above the layers on purpose (none today).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The layers, lowest first (src/lib.rs's order): a module may name only modules at its
/// own index or below.
const LAYERS: &[&str] = &[
    "test_dir",
    "dpdk",
    "pcap",
    "wire",
    "ipf",
    "conntrack",
    "nat",
    "config",
    "pipeline",
    "control",
    "cli",
    "main",
];

fn layer(top: &str) -> Option<usize> {
    LAYERS.iter().position(|l| *l == top)
}

/// Every `.rs` file under `dir`.
fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    let mut entries: Vec<_> = rd.filter_map(Result::ok).map(|e| e.path()).collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|e| e == "rs") {
            out.push(p);
        }
    }
}

/// The module path of a file under src/ (`src/conntrack/l4/mod.rs` → `conntrack::l4`;
/// `src/main.rs` → `main`, `src/lib.rs` → the empty path).
fn module_of(src: &Path, file: &Path) -> Vec<String> {
    let rel = file.strip_prefix(src).unwrap_or(file).with_extension("");
    let mut parts: Vec<String> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if parts.last().is_some_and(|l| l == "mod" || l == "lib") {
        parts.pop();
    }
    parts
}

/// The code of a file without its comments (line comments, doc comments, block comments)
/// and without the contents of string literals.
fn code_only(text: &str) -> String {
    let b = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < b.len() {
        if b[i..].starts_with(b"//") {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
        } else if b[i..].starts_with(b"/*") {
            i += 2;
            while i < b.len() && !b[i..].starts_with(b"*/") {
                i += 1;
            }
            i += 2;
        } else if b[i] == b'"' {
            i += 1;
            while i < b.len() && b[i] != b'"' {
                if b[i] == b'\\' {
                    i += 1;
                }
                i += 1;
            }
            i += 1;
            out.push_str("\"\"");
        } else if b[i] == b'\'' && i + 2 < b.len() && (b[i + 2] == b'\'' || b[i + 1] == b'\\') {
            // A char literal ('x', '\n', '\''); lifetimes ('a) are left as they are.
            let close = b[i + 1..]
                .iter()
                .skip(1)
                .position(|&c| c == b'\'')
                .map_or(b.len(), |p| i + 2 + p);
            i = close + 1;
            out.push_str("' '");
        } else {
            out.push(b[i] as char);
            i += 1;
        }
    }
    out
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// The paths that follow `root::` in `code` (groups expanded), each as its segments.
fn paths_after(code: &str, root: &str) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    let pat = format!("{root}::");
    let mut from = 0;
    while let Some(at) = code[from..].find(&pat) {
        let start = from + at;
        from = start + pat.len();
        // `root` must be a whole word (not `my_crate::`).
        if code[..start].chars().next_back().is_some_and(is_ident) {
            continue;
        }
        expand(&code[from..], &mut Vec::new(), &mut out);
    }
    out
}

/// Reads one path (possibly a `{...}` group) from the start of `s`, with `prefix`.
fn expand(s: &str, prefix: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
    let s = s.trim_start();
    if let Some(rest) = s.strip_prefix('{') {
        // Split the group at its top-level commas.
        let mut depth = 0;
        let mut item_start = 0;
        for (k, c) in rest.char_indices() {
            match c {
                '{' => depth += 1,
                '}' if depth == 0 => {
                    expand(&rest[item_start..k], &mut prefix.clone(), out);
                    return;
                }
                '}' => depth -= 1,
                ',' if depth == 0 => {
                    expand(&rest[item_start..k], &mut prefix.clone(), out);
                    item_start = k + 1;
                }
                _ => {}
            }
        }
        return;
    }
    let ident: String = s.chars().take_while(|&c| is_ident(c)).collect();
    if ident.is_empty() {
        if !prefix.is_empty() {
            out.push(prefix.clone());
        }
        return;
    }
    prefix.push(ident.clone());
    let rest = &s[ident.len()..];
    match rest.strip_prefix("::") {
        Some(r) => expand(r, prefix, out),
        None => out.push(prefix.clone()),
    }
}

struct Tree {
    /// Module path → file.
    files: BTreeMap<Vec<String>, PathBuf>,
}

impl Tree {
    /// The longest known module that `path` (absolute, from the crate root) starts with.
    fn resolve(&self, path: &[String]) -> Option<Vec<String>> {
        (1..=path.len())
            .rev()
            .map(|n| path[..n].to_vec())
            .find(|p| self.files.contains_key(p))
    }
}

/// Every module this file's code names: (module path, layer of its top module).
fn edges(tree: &Tree, module: &[String], code: &str, is_main: bool) -> BTreeSet<Vec<String>> {
    let mut targets = BTreeSet::new();
    let roots: &[&str] = if is_main {
        &["crate", "ctgate"]
    } else {
        &["crate"]
    };
    for root in roots {
        for p in paths_after(code, root) {
            if let Some(m) = tree.resolve(&p) {
                targets.insert(m);
            }
        }
    }
    // `super::` paths: relative to the file's parent module (repeated `super::` climb).
    let parent: Vec<String> = module[..module.len().saturating_sub(1)].to_vec();
    for p in paths_after(code, "super") {
        let mut base = parent.clone();
        let mut rest = p.as_slice();
        while rest.first().is_some_and(|s| s == "super") {
            base.pop();
            rest = &rest[1..];
        }
        let mut abs = base;
        abs.extend(rest.iter().cloned());
        if let Some(m) = tree.resolve(&abs) {
            targets.insert(m);
        }
    }
    targets.remove(module);
    targets
}

fn load() -> (Tree, BTreeMap<Vec<String>, BTreeSet<Vec<String>>>) {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut tree = Tree {
        files: BTreeMap::new(),
    };
    for f in &files {
        tree.files.insert(module_of(&src, f), f.clone());
    }
    let mut graph = BTreeMap::new();
    for (m, f) in &tree.files {
        let text = std::fs::read_to_string(f).unwrap_or_default();
        let code = code_only(&text);
        let is_main = m.first().is_some_and(|t| t == "main");
        graph.insert(m.clone(), edges(&tree, m, &code, is_main));
    }
    (tree, graph)
}

fn name(m: &[String]) -> String {
    if m.is_empty() {
        "lib".into()
    } else {
        m.join("::")
    }
}

#[test]
fn no_module_names_a_higher_layer() {
    let (_, graph) = load();
    let mut bad = Vec::new();
    for (m, targets) in &graph {
        let Some(own) = m.first().and_then(|t| layer(t)) else {
            continue; // lib.rs: declares the modules
        };
        for t in targets {
            let Some(theirs) = t.first().and_then(|x| layer(x)) else {
                continue;
            };
            if theirs > own {
                bad.push(format!("{} -> {}", name(m), name(t)));
            }
        }
    }
    assert!(bad.is_empty(), "upward imports:\n{}", bad.join("\n"));
    // The check sees the imports it must see (it would pass vacuously otherwise).
    let seen = |from: &str, to: &str| {
        graph
            .iter()
            .any(|(m, ts)| name(m) == from && ts.iter().any(|t| name(t) == to))
    };
    assert!(seen("conntrack::tracker", "conntrack::table"));
    assert!(
        seen("pipeline::gateway", "nat"),
        "{:?}",
        graph.get(&vec!["pipeline".to_string(), "gateway".to_string()])
    );
    assert!(seen("main", "cli"));
}

#[test]
fn no_files_name_each_other_in_a_circle() {
    let (_, graph) = load();
    // Back edges allowed: a module naming its own descendants (a mod.rs re-exporting).
    let allowed =
        |from: &Vec<String>, to: &Vec<String>| to.len() > from.len() && to.starts_with(from);
    let nodes: Vec<&Vec<String>> = graph.keys().collect();
    let index: BTreeMap<&Vec<String>, usize> =
        nodes.iter().enumerate().map(|(i, m)| (*m, i)).collect();
    let adj: Vec<Vec<usize>> = nodes
        .iter()
        .map(|m| {
            graph[*m]
                .iter()
                .filter(|t| !allowed(m, t))
                .filter_map(|t| index.get(t).copied())
                .collect()
        })
        .collect();
    // Tarjan's strongly connected components: any component of more than one file is a
    // circle.
    struct S {
        idx: Vec<Option<usize>>,
        low: Vec<usize>,
        on: Vec<bool>,
        stack: Vec<usize>,
        next: usize,
        comps: Vec<Vec<usize>>,
    }
    fn visit(v: usize, adj: &[Vec<usize>], s: &mut S) {
        s.idx[v] = Some(s.next);
        s.low[v] = s.next;
        s.next += 1;
        s.stack.push(v);
        s.on[v] = true;
        for &w in &adj[v] {
            match s.idx[w] {
                None => {
                    visit(w, adj, s);
                    s.low[v] = s.low[v].min(s.low[w]);
                }
                Some(iw) if s.on[w] => s.low[v] = s.low[v].min(iw),
                Some(_) => {}
            }
        }
        if Some(s.low[v]) == s.idx[v] {
            let mut comp = Vec::new();
            while let Some(w) = s.stack.pop() {
                s.on[w] = false;
                comp.push(w);
                if w == v {
                    break;
                }
            }
            s.comps.push(comp);
        }
    }
    let n = nodes.len();
    let mut s = S {
        idx: vec![None; n],
        low: vec![0; n],
        on: vec![false; n],
        stack: Vec::new(),
        next: 0,
        comps: Vec::new(),
    };
    for v in 0..n {
        if s.idx[v].is_none() {
            visit(v, &adj, &mut s);
        }
    }
    let circles: Vec<String> = s
        .comps
        .iter()
        .filter(|c| c.len() > 1)
        .map(|c| {
            c.iter()
                .map(|&i| name(nodes[i]))
                .collect::<Vec<_>>()
                .join(" <-> ")
        })
        .collect();
    assert!(
        circles.is_empty(),
        "files naming each other in a circle:\n{}",
        circles.join("\n")
    );
    assert!(n > 50, "only {n} source files found");
}

#[test]
fn the_path_reader_expands_groups_and_skips_comments() {
    let code = code_only(
        "use crate::{a::b, c::{d, e::f}};\n// crate::zzz\nlet x = crate::g::h(\"crate::s\");",
    );
    let got: Vec<String> = paths_after(&code, "crate")
        .iter()
        .map(|p| p.join("::"))
        .collect();
    assert_eq!(got, ["a::b", "c::d", "c::e::f", "g::h"]);
}
