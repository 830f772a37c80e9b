//! The library's modules must form no dependency circle: a module (a file under `src/`, a
//! folder's `mod.rs` standing for the folder; binaries left out) may use another only if that one
//! does not, directly or through others, use it back. Edges are the `crate::` paths outside
//! comments and test modules; a module and its own submodules count as one room.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

fn modules(src: &Path) -> anyhow::Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![src.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir)? {
            let path = entry?.path();
            let rel = path.strip_prefix(src)?.to_string_lossy().replace('\\', "/");
            if path.is_dir() {
                if rel != "bin" {
                    stack.push(path);
                }
                continue;
            }
            let Some(stem) = rel.strip_suffix(".rs") else {
                continue;
            };
            if stem == "lib" || stem == "main" {
                continue;
            }
            let name = stem.trim_end_matches("/mod").replace('/', "::");
            out.insert(name, std::fs::read_to_string(&path)?);
        }
    }
    Ok(out)
}

/// The text without `#[cfg(test)]` modules (everything after the first one) and comments.
fn code(text: &str) -> String {
    let text = text.split("#[cfg(test)]").next().unwrap_or_default();
    let mut out = String::new();
    let mut rest = text;
    while let Some(i) = rest.find("/*") {
        out.push_str(&rest[..i]);
        rest = rest[i..].find("*/").map_or("", |j| &rest[i + j + 2..]);
    }
    out.push_str(rest);
    out.lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The longest module name that prefixes `path` (`a::b::Item` → `a::b` when that is a module).
fn owner<'a>(path: &str, names: &'a BTreeSet<String>) -> Option<&'a String> {
    let parts: Vec<&str> = path.split("::").collect();
    (1..=parts.len())
        .rev()
        .find_map(|n| names.get(&parts[..n].join("::")))
}

fn edges(mods: &BTreeMap<String, String>) -> BTreeMap<String, BTreeSet<String>> {
    let names: BTreeSet<String> = mods.keys().cloned().collect();
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (m, text) in mods {
        let code = code(text);
        let targets = out.entry(m.clone()).or_default();
        for (i, _) in code.match_indices("crate::") {
            let tail = &code[i + "crate::".len()..];
            let base: String = tail
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':')
                .collect();
            let base = base.trim_end_matches(':').to_string();
            let rest = &tail[base.len()..];
            // `crate::{a, b}` or `crate::m::{a, b}`: one path per item of the group.
            let group = rest
                .strip_prefix("::{")
                .or_else(|| rest.strip_prefix('{'))
                .map(|g| &g[..g.find('}').unwrap_or(g.len())]);
            let paths: Vec<String> = match group {
                Some(group) => group
                    .split(',')
                    .filter_map(|x| x.split_whitespace().next())
                    .map(|x| {
                        if base.is_empty() {
                            x.to_string()
                        } else {
                            format!("{base}::{x}")
                        }
                    })
                    .collect(),
                None => vec![base.clone()],
            };
            for p in paths {
                if let Some(o) = owner(&p, &names) {
                    let own_room = o == m
                        || o.starts_with(&format!("{m}::"))
                        || m.starts_with(&format!("{o}::"));
                    if !own_room {
                        targets.insert(o.clone());
                    }
                }
            }
        }
    }
    out
}

/// A cycle through `start`, if there is one (depth-first search for a path back to it).
fn cycle_through(start: &str, edges: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    let mut stack = vec![(start.to_string(), vec![start.to_string()])];
    let mut seen = BTreeSet::new();
    while let Some((node, path)) = stack.pop() {
        for next in edges.get(&node).into_iter().flatten() {
            if next == start {
                return Some(path.clone());
            }
            if seen.insert(next.clone()) {
                let mut p = path.clone();
                p.push(next.clone());
                stack.push((next.clone(), p));
            }
        }
    }
    None
}

#[test]
fn the_module_graph_has_no_cycle() -> anyhow::Result<()> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mods = modules(&src)?;
    assert!(mods.len() > 10, "found only {} modules", mods.len());
    let edges = edges(&mods);
    let cycles: Vec<String> = mods
        .keys()
        .filter_map(|m| cycle_through(m, &edges))
        .map(|c| format!("{} -> {}", c.join(" -> "), c[0]))
        .collect();
    assert!(
        cycles.is_empty(),
        "module cycles (break them by moving what both sides need into a lower module):\n{}",
        cycles.join("\n")
    );
    Ok(())
}

#[test]
fn the_checker_finds_a_planted_cycle() {
    let mods = BTreeMap::from([
        ("a".to_string(), "use crate::b::Thing;".to_string()),
        ("b".to_string(), "fn f() { crate::c::g() }".to_string()),
        (
            "c".to_string(),
            "use crate::{a::X, io};\n// crate::b in a comment".to_string(),
        ),
        (
            "io".to_string(),
            "#[cfg(test)]\nmod tests { use crate::a; }".to_string(),
        ),
    ]);
    let edges = edges(&mods);
    assert!(cycle_through("a", &edges).is_some());
    assert!(cycle_through("io", &edges).is_none());
    assert_eq!(
        edges
            .get("c")
            .map(|s| s.iter().cloned().collect::<Vec<_>>()),
        Some(vec!["a".to_string(), "io".to_string()])
    );
}
