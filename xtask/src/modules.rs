//! `cargo xtask modules`: the dependency graph between the top-level
//! modules of a crate, from the `crate::` paths each file names, and its
//! cycles. Run by `cargo xtask test` for the crates whose graph must stay
//! acyclic. Written by hand: `cargo modules` needs a nightly toolchain and
//! rust-analyzer, and the question is small (which file names which).

use std::{
    collections::{BTreeMap, BTreeSet},
    fs,
    path::{Path, PathBuf},
};

use anyhow::{Context, Result, bail};

/// Top-level module -> the top-level modules it names.
pub type Graph = BTreeMap<String, BTreeSet<String>>;

/// The graph of the crate whose sources are in `src`.
pub fn graph(src: &Path) -> Result<Graph> {
    let mut graph = Graph::new();
    for file in rust_files(src)? {
        let rel = file.strip_prefix(src).unwrap_or(&file);
        let module = top_module(rel);
        let text = fs::read_to_string(&file).with_context(|| file.display().to_string())?;
        let deps = graph.entry(module.clone()).or_default();
        for named in named_modules(&text) {
            if named != module {
                deps.insert(named);
            }
        }
    }
    // Roots (main.rs, lib.rs) declare every module: not a dependency.
    graph.remove("main");
    graph.remove("lib");
    for deps in graph.values_mut() {
        deps.remove("main");
        deps.remove("lib");
    }
    Ok(graph)
}

/// `foo.rs` and `foo/bar.rs` belong to `foo`.
fn top_module(rel: &Path) -> String {
    let first = rel
        .components()
        .next()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .unwrap_or_default();
    first.trim_end_matches(".rs").to_owned()
}

fn rust_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).with_context(|| dir.display().to_string())? {
        let path = entry?.path();
        if path.is_dir() {
            out.extend(rust_files(&path)?);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
    Ok(out)
}

/// The top-level modules named as `crate::x` anywhere in `text`, and in
/// `use crate::{x, y::z, ...}` groups; `#[cfg(test)]` code is included
/// (tests may not tie modules in a knot either). Comments are skipped.
fn named_modules(text: &str) -> BTreeSet<String> {
    let code: String = text
        .lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n");
    let mut out = BTreeSet::new();
    let mut rest = code.as_str();
    while let Some(at) = rest.find("crate::") {
        rest = &rest[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            // A group: the first segment of each top-level item.
            let mut depth = 1;
            let mut item = String::new();
            let mut first_segment = true;
            for c in group.chars() {
                match c {
                    '{' => depth += 1,
                    '}' => depth -= 1,
                    _ => {}
                }
                if depth == 0 {
                    break;
                }
                if depth == 1 && c == ',' {
                    first_segment = true;
                    push_ident(&mut out, &mut item);
                    continue;
                }
                if first_segment {
                    if c.is_alphanumeric() || c == '_' {
                        item.push(c);
                    } else if !item.is_empty() {
                        first_segment = false;
                        push_ident(&mut out, &mut item);
                    }
                }
            }
            push_ident(&mut out, &mut item);
        } else {
            let ident: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            let mut ident = ident;
            push_ident(&mut out, &mut ident);
        }
    }
    out
}

fn push_ident(out: &mut BTreeSet<String>, item: &mut String) {
    let name = std::mem::take(item);
    // Lower-case names are modules; `crate::Foo` is an item of the root.
    if name.chars().next().is_some_and(|c| c.is_ascii_lowercase()) && name != "self" {
        out.insert(name);
    }
}

/// The cycles of `graph` (its strongly connected components of more than
/// one module), each sorted.
pub fn cycles(graph: &Graph) -> Vec<Vec<String>> {
    // Tarjan's algorithm, recursive: a crate has tens of modules.
    struct State<'a> {
        graph: &'a Graph,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on_stack: BTreeSet<&'a str>,
        next: usize,
        out: Vec<Vec<String>>,
    }
    fn visit<'a>(s: &mut State<'a>, v: &'a str) {
        s.index.insert(v, s.next);
        s.low.insert(v, s.next);
        s.next += 1;
        s.stack.push(v);
        s.on_stack.insert(v);
        if let Some(deps) = s.graph.get(v) {
            for w in deps {
                let w = w.as_str();
                if !s.graph.contains_key(w) {
                    continue;
                }
                if !s.index.contains_key(w) {
                    visit(s, w);
                    let lw = s.low[w];
                    let lv = s.low.get_mut(v).expect("visited");
                    *lv = (*lv).min(lw);
                } else if s.on_stack.contains(w) {
                    let iw = s.index[w];
                    let lv = s.low.get_mut(v).expect("visited");
                    *lv = (*lv).min(iw);
                }
            }
        }
        if s.low[v] == s.index[v] {
            let mut component = Vec::new();
            while let Some(w) = s.stack.pop() {
                s.on_stack.remove(w);
                component.push(w.to_owned());
                if w == v {
                    break;
                }
            }
            if component.len() > 1 {
                component.sort();
                s.out.push(component);
            }
        }
    }
    let mut s = State {
        graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        next: 0,
        out: Vec::new(),
    };
    for v in graph.keys() {
        if !s.index.contains_key(v.as_str()) {
            visit(&mut s, v);
        }
    }
    s.out.sort();
    s.out
}

/// Fails naming the cycles of the crate in `src` (relative to the root).
pub fn check_acyclic(root: &Path, src: &str) -> Result<()> {
    let found = cycles(&graph(&root.join(src))?);
    if found.is_empty() {
        return Ok(());
    }
    let list: Vec<String> = found.iter().map(|c| c.join(" <-> ")).collect();
    bail!("module cycles in {src}: {}", list.join("; "))
}

/// `cargo xtask modules [SRC]`: prints the graph and its cycles.
pub fn print(root: &Path, src: &str) -> Result<()> {
    let graph = graph(&root.join(src))?;
    for (module, deps) in &graph {
        let deps: Vec<_> = deps.iter().map(String::as_str).collect();
        println!("{module} -> {}", deps.join(", "));
    }
    let found = cycles(&graph);
    if found.is_empty() {
        println!("no cycles");
    }
    for c in found {
        println!("cycle: {}", c.join(" <-> "));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_paths_and_groups() {
        let text = "use crate::{\n    count::{self, Source},\n    read::{self, Addr},\n    scratch,\n};\nfn f() { crate::maps::x(); let _ = crate::Foo; }\n// crate::ignored\n";
        let names: Vec<_> = named_modules(text).into_iter().collect();
        assert_eq!(names, ["count", "maps", "read", "scratch"]);
    }

    #[test]
    fn finds_a_cycle_and_only_it() {
        let mut g = Graph::new();
        g.entry("a".into()).or_default().insert("b".into());
        g.entry("b".into()).or_default().insert("a".into());
        g.entry("c".into()).or_default().insert("a".into());
        assert_eq!(cycles(&g), vec![vec!["a".to_owned(), "b".to_owned()]]);
    }
}
