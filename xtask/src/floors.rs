//! `cargo xtask floors`: the agent's folders (`runtime/src`) by floor, and
//! the check that every floor looks down — no folder reaches, through any
//! chain of `crate::` paths, a folder that reaches it back, and no two
//! sibling files import each other. The unit test at the bottom runs it
//! over the real tree in `cargo xtask test`, so a new upward import fails
//! the suite with the files that make the circle.
//!
//! It reads paths as text (comments left out), which is what an import
//! is in Rust: `crate::room::…` and `crate::{room, …}` for folders,
//! `super::file` and `crate::folder::file` for siblings.

use anyhow::bail;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Who imports whom, with the files that do it.
#[derive(Debug, Default)]
pub struct Graph {
    /// room → room it uses → files of the first room that use it.
    pub edges: BTreeMap<String, BTreeMap<String, BTreeSet<String>>>,
    pub rooms: BTreeSet<String>,
}

/// The code of one line without its comment (`//`, `///`, `//!`). A `//`
/// inside a string is rare enough in this tree to be ignored.
pub(crate) fn code_of(line: &str) -> &str {
    line.split("//").next().unwrap_or("")
}

/// Names that follow `crate::` on a line: `crate::a::…` gives `a`;
/// `crate::{a, b::c}` gives `a` and `b`.
fn crate_roots(code: &str) -> Vec<String> {
    let mut out = Vec::new();
    for (i, _) in code.match_indices("crate::") {
        let rest = &code[i + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let group = group.split('}').next().unwrap_or("");
            for item in group.split(',') {
                let name: String = item
                    .trim()
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                if !name.is_empty() {
                    out.push(name);
                }
            }
        } else {
            let name: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() {
                out.push(name);
            }
        }
    }
    out
}

pub(crate) fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            rust_files(&path, out)?;
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
    Ok(())
}

/// The room of a file: its top folder under `src`, or its stem for a file
/// at the top (`config.rs` → `config`).
fn room_of(rel: &Path) -> String {
    let first = rel
        .components()
        .next()
        .map(|c| c.as_os_str().to_string_lossy().into_owned());
    let first = first.unwrap_or_default();
    first
        .strip_suffix(".rs")
        .map(str::to_owned)
        .unwrap_or(first)
}

/// The folder graph of `src`.
pub fn folder_graph(src: &Path) -> anyhow::Result<Graph> {
    let mut files = Vec::new();
    rust_files(src, &mut files)?;
    let mut graph = Graph::default();
    for file in files {
        let rel = file.strip_prefix(src)?.to_owned();
        let room = room_of(&rel);
        if room == "lib" || room == "main" {
            continue;
        }
        graph.rooms.insert(room.clone());
        let text = std::fs::read_to_string(&file)?;
        for line in text.lines() {
            for target in crate_roots(code_of(line)) {
                if target != room {
                    graph
                        .edges
                        .entry(room.clone())
                        .or_default()
                        .entry(target)
                        .or_default()
                        .insert(rel.display().to_string());
                }
            }
        }
    }
    Ok(graph)
}

/// Strongly connected groups of more than one room: each is a circle.
pub fn circles(graph: &Graph) -> Vec<Vec<String>> {
    // Tarjan's algorithm, iterative over a small graph (a few dozen rooms).
    struct State<'a> {
        graph: &'a Graph,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on_stack: BTreeSet<&'a str>,
        next: usize,
        found: Vec<Vec<String>>,
    }
    fn visit<'a>(s: &mut State<'a>, v: &'a str) {
        s.index.insert(v, s.next);
        s.low.insert(v, s.next);
        s.next += 1;
        s.stack.push(v);
        s.on_stack.insert(v);
        let graph = s.graph;
        for w in graph.edges.get(v).into_iter().flat_map(|m| m.keys()) {
            let w = w.as_str();
            if !s.index.contains_key(w) {
                visit(s, w);
                let lw = s.low[w];
                let lv = s.low[v];
                s.low.insert(v, lv.min(lw));
            } else if s.on_stack.contains(w) {
                let iw = s.index[w];
                let lv = s.low[v];
                s.low.insert(v, lv.min(iw));
            }
        }
        if s.low[v] == s.index[v] {
            let mut group = Vec::new();
            while let Some(w) = s.stack.pop() {
                s.on_stack.remove(w);
                group.push(w.to_owned());
                if w == v {
                    break;
                }
            }
            if group.len() > 1 {
                group.sort();
                s.found.push(group);
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
        found: Vec::new(),
    };
    let all: Vec<&str> = graph
        .rooms
        .iter()
        .map(String::as_str)
        .chain(graph.edges.keys().map(String::as_str))
        .collect();
    for v in all {
        if !s.index.contains_key(v) {
            visit(&mut s, v);
        }
    }
    s.found
}

/// Pairs of sibling files (not `mod.rs`) in one folder that import each
/// other, through `super::x` or `crate::<folder>::x`.
pub fn sibling_cycles(src: &Path) -> anyhow::Result<Vec<(String, String)>> {
    let mut files = Vec::new();
    rust_files(src, &mut files)?;
    // folder → file stem → stems it names
    let mut uses: BTreeMap<PathBuf, BTreeMap<String, BTreeSet<String>>> = BTreeMap::new();
    for file in &files {
        let (Some(dir), Some(stem)) = (file.parent(), file.file_stem()) else {
            continue;
        };
        let stem = stem.to_string_lossy().into_owned();
        if stem == "mod" || stem == "lib" || stem == "main" {
            continue;
        }
        let rel_dir = dir.strip_prefix(src)?;
        let module_path: Vec<String> = rel_dir
            .components()
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .collect();
        let prefix = format!("crate::{}::", module_path.join("::"));
        let text = std::fs::read_to_string(file)?;
        let mut named = BTreeSet::new();
        for line in text.lines() {
            let code = code_of(line);
            for pat in ["super::", prefix.as_str()] {
                if module_path.is_empty() && pat != "super::" {
                    continue;
                }
                for (i, _) in code.match_indices(pat) {
                    let name: String = code[i + pat.len()..]
                        .chars()
                        .take_while(|c| c.is_alphanumeric() || *c == '_')
                        .collect();
                    if !name.is_empty() && name != stem {
                        named.insert(name);
                    }
                }
            }
        }
        uses.entry(dir.to_owned()).or_default().insert(stem, named);
    }
    let mut out = Vec::new();
    for (dir, stems) in &uses {
        for (a, named) in stems {
            for b in named {
                if a < b && stems.get(b).is_some_and(|n| n.contains(a)) {
                    let rel = dir.strip_prefix(src).unwrap_or(dir).display().to_string();
                    let folder = if rel.is_empty() {
                        String::new()
                    } else {
                        format!("{rel}/")
                    };
                    out.push((format!("{folder}{a}.rs"), format!("{folder}{b}.rs")));
                }
            }
        }
    }
    Ok(out)
}

/// Floors from the bottom: a room's floor is one above the highest room it
/// uses (rooms in a circle are not given one).
pub fn floors(graph: &Graph) -> BTreeMap<String, usize> {
    let mut floor: BTreeMap<String, usize> = BTreeMap::new();
    let mut changed = true;
    let mut rounds = 0;
    while changed && rounds <= graph.rooms.len() {
        changed = false;
        rounds += 1;
        for room in &graph.rooms {
            let f = graph
                .edges
                .get(room)
                .into_iter()
                .flat_map(|m| m.keys())
                .map(|t| floor.get(t).map_or(1, |f| f + 1))
                .max()
                .unwrap_or(0);
            if floor.get(room) != Some(&f) {
                floor.insert(room.clone(), f);
                changed = true;
            }
        }
    }
    floor
}

/// The report and the verdict for `runtime/src`.
pub fn check(src: &Path) -> anyhow::Result<String> {
    let graph = folder_graph(src)?;
    let mut problems = Vec::new();
    for group in circles(&graph) {
        let mut why = Vec::new();
        for a in &group {
            for b in &group {
                if let Some(files) = graph.edges.get(a).and_then(|m| m.get(b)) {
                    let files: Vec<&str> = files.iter().map(String::as_str).collect();
                    why.push(format!("  {a} -> {b}: {}", files.join(", ")));
                }
            }
        }
        problems.push(format!(
            "folders that import each other: {}\n{}",
            group.join(", "),
            why.join("\n")
        ));
    }
    for (a, b) in sibling_cycles(src)? {
        problems.push(format!("files that import each other: {a} <-> {b}"));
    }
    if !problems.is_empty() {
        bail!(
            "every floor must look down (docs/architecture.md); move what both sides need to the floor below them:\n{}",
            problems.join("\n")
        );
    }
    let mut by_floor: BTreeMap<usize, Vec<String>> = BTreeMap::new();
    for (room, f) in floors(&graph) {
        by_floor.entry(f).or_default().push(room);
    }
    let mut report = String::new();
    for (f, rooms) in by_floor.iter().rev() {
        report.push_str(&format!("floor {f}: {}\n", rooms.join(", ")));
    }
    Ok(report)
}

pub fn run(root: &Path) -> anyhow::Result<()> {
    print!("{}", check(&root.join("runtime/src"))?);
    println!("no folder imports a folder above it; no two files import each other");
    let names = crate::named_commands::check(root)?;
    println!(
        "no string literal in runtime/src names one of the {names} built-in commands (outside config.rs and tests)"
    );
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A tree of `(path, text)` files in a temporary folder.
    pub(crate) fn tree(files: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("temp dir");
        for (path, text) in files {
            let p = dir.path().join(path);
            std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
            std::fs::write(p, text).expect("write");
        }
        dir
    }

    /// Also: the agent names no built-in command (`named_commands.rs`).
    #[test]
    fn the_agent_has_no_upward_import_and_names_no_command() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        if let Err(e) = check(&root.join("runtime/src")) {
            panic!("{e:#}");
        }
        if let Err(e) = crate::named_commands::check(&root) {
            panic!("{e:#}");
        }
    }

    #[test]
    fn a_circle_of_three_folders_is_named_with_its_files() {
        let t = tree(&[
            ("a/mod.rs", "use crate::b::x;\n"),
            (
                "b/mod.rs",
                "// crate::a in a comment is no import\nuse crate::{c, store};\n",
            ),
            ("c/x.rs", "fn f() { crate::a::g() }\n"),
            ("store.rs", ""),
        ]);
        let err = format!("{:#}", check(t.path()).expect_err("a circle"));
        assert!(
            err.contains("folders that import each other: a, b, c"),
            "{err}"
        );
        assert!(err.contains("  c -> a: c/x.rs"), "{err}");
        assert!(!err.contains("b -> a"), "{err}");
    }

    #[test]
    fn sibling_files_that_import_each_other_are_refused() {
        let t = tree(&[
            ("s/mod.rs", "mod cache;\nmod child;\n"),
            ("s/cache.rs", "fn f() { super::child::g() }\n"),
            ("s/child.rs", "use crate::s::cache::h;\n"),
        ]);
        let err = format!("{:#}", check(t.path()).expect_err("a file circle"));
        assert!(
            err.contains("files that import each other: s/cache.rs <-> s/child.rs"),
            "{err}"
        );
    }

    #[test]
    fn floors_count_from_the_bottom() {
        let t = tree(&[
            ("top/mod.rs", "use crate::mid::x;\n"),
            ("mid/mod.rs", "use crate::low::y;\n"),
            ("low.rs", ""),
        ]);
        let report = check(t.path()).expect("no circle");
        assert_eq!(report, "floor 2: top\nfloor 1: mid\nfloor 0: low\n");
    }
}
