//! Architecture checks over the source tree, in the spirit of
//! rust-analyzer's tidy tests:
//!
//! - no module imports a module that imports it back, in any crate (a
//!   parent declaring `mod child;` is not an import; a path or `use` naming
//!   a module is);
//! - the gateway's composition root (`server`) is imported by no module;
//! - every library forbids unsafe code, and every crate's `//!` doc opens
//!   with a layout of its modules.
//!
//! The scanner is small and knows Rust well enough for this tree: it skips
//! comments, strings and char literals, follows `mod` declarations (files
//! and inline blocks), expands `use` groups, and resolves `crate::`,
//! `super::`, `self::` and child-module paths to the longest known module.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    Path,
    Open,
    Close,
    Comma,
    Semi,
    Other,
}

fn tokens(src: &str) -> Vec<Tok> {
    let c: Vec<char> = src.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < c.len() {
        let ch = c[i];
        if ch == '/' && c.get(i + 1) == Some(&'/') {
            while i < c.len() && c[i] != '\n' {
                i += 1;
            }
        } else if ch == '/' && c.get(i + 1) == Some(&'*') {
            let mut depth = 0;
            while i < c.len() {
                if c[i] == '/' && c.get(i + 1) == Some(&'*') {
                    depth += 1;
                    i += 2;
                } else if c[i] == '*' && c.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
        } else if ch == 'r'
            && (c.get(i + 1) == Some(&'"') || (c.get(i + 1) == Some(&'#') && c.get(i + 2) != Some(&'[')))
        {
            // Raw string r"..." or r#"..."#.
            let mut j = i + 1;
            let mut hashes = 0;
            while c.get(j) == Some(&'#') {
                hashes += 1;
                j += 1;
            }
            if c.get(j) != Some(&'"') {
                out.push(Tok::Ident("r".into()));
                i += 1;
                continue;
            }
            j += 1;
            loop {
                if j >= c.len() {
                    break;
                }
                if c[j] == '"' && (0..hashes).all(|k| c.get(j + 1 + k) == Some(&'#')) {
                    j += 1 + hashes;
                    break;
                }
                j += 1;
            }
            i = j;
            out.push(Tok::Other);
        } else if ch == '"' {
            i += 1;
            while i < c.len() && c[i] != '"' {
                if c[i] == '\\' {
                    i += 1;
                }
                i += 1;
            }
            i += 1;
            out.push(Tok::Other);
        } else if ch == '\'' {
            // A char literal ('a', '\n', '\u{..}') or a lifetime ('a).
            if c.get(i + 1) == Some(&'\\') {
                i += 2;
                while i < c.len() && c[i] != '\'' {
                    i += 1;
                }
                i += 1;
            } else if c.get(i + 2) == Some(&'\'') {
                i += 3;
            } else {
                i += 1;
                while i < c.len() && (c[i].is_alphanumeric() || c[i] == '_') {
                    i += 1;
                }
            }
            out.push(Tok::Other);
        } else if ch.is_alphabetic() || ch == '_' {
            let start = i;
            while i < c.len() && (c[i].is_alphanumeric() || c[i] == '_') {
                i += 1;
            }
            out.push(Tok::Ident(c[start..i].iter().collect()));
        } else if ch.is_whitespace() {
            i += 1;
        } else if ch == ':' && c.get(i + 1) == Some(&':') {
            out.push(Tok::Path);
            i += 2;
        } else {
            out.push(match ch {
                '{' => Tok::Open,
                '}' => Tok::Close,
                ',' => Tok::Comma,
                ';' => Tok::Semi,
                _ => Tok::Other,
            });
            i += 1;
        }
    }
    out
}

/// Expands a `use` tree starting at `toks[*i]` into full paths.
fn use_tree(toks: &[Tok], i: &mut usize, prefix: &[String], out: &mut Vec<Vec<String>>) {
    let mut path = prefix.to_vec();
    loop {
        match toks.get(*i) {
            Some(Tok::Ident(name)) => {
                path.push(name.clone());
                *i += 1;
                match toks.get(*i) {
                    Some(Tok::Path) => *i += 1,
                    Some(Tok::Ident(kw)) if kw == "as" => {
                        *i += 2;
                        out.push(path);
                        return;
                    }
                    _ => {
                        out.push(path);
                        return;
                    }
                }
            }
            Some(Tok::Open) => {
                *i += 1;
                loop {
                    match toks.get(*i) {
                        Some(Tok::Close) => {
                            *i += 1;
                            return;
                        }
                        Some(Tok::Comma) => *i += 1,
                        None => return,
                        _ => use_tree(toks, i, &path, out),
                    }
                }
            }
            Some(Tok::Other) => {
                // `*` (glob) or a leading `::`.
                *i += 1;
                out.push(path);
                return;
            }
            _ => {
                out.push(path);
                return;
            }
        }
    }
}

/// One module's file content, its module path, and the child files it declares.
#[derive(Debug, Default)]
struct Scan {
    /// Module path → paths it names.
    refs: BTreeMap<Vec<String>, Vec<Vec<String>>>,
    /// Module path → child module names (file or inline).
    children: BTreeMap<Vec<String>, BTreeSet<String>>,
    /// Module paths declared as `mod x;`, to read from files.
    files: Vec<Vec<String>>,
}

fn scan(src: &str, module: &[String], into: &mut Scan) {
    let toks = tokens(src);
    let mut stack: Vec<(Vec<String>, usize)> = vec![(module.to_vec(), 0)];
    let mut depth = 0usize;
    let mut i = 0;
    while i < toks.len() {
        let current = stack.last().expect("the file's module").0.clone();
        match &toks[i] {
            Tok::Open => {
                depth += 1;
                i += 1;
            }
            Tok::Close => {
                if stack.len() > 1 && stack.last().is_some_and(|(_, d)| *d == depth) {
                    stack.pop();
                }
                depth = depth.saturating_sub(1);
                i += 1;
            }
            Tok::Ident(kw) if kw == "mod" => {
                if let Some(Tok::Ident(name)) = toks.get(i + 1) {
                    let child: Vec<String> = current.iter().cloned().chain([name.clone()]).collect();
                    into.children.entry(current.clone()).or_default().insert(name.clone());
                    match toks.get(i + 2) {
                        Some(Tok::Semi) => into.files.push(child),
                        Some(Tok::Open) => {
                            depth += 1;
                            stack.push((child, depth));
                            i += 3;
                            continue;
                        }
                        _ => {}
                    }
                }
                i += 2;
            }
            // `pub use` re-exports: a facade, not an import of what it names.
            Tok::Ident(kw) if kw == "pub" && toks.get(i + 1) == Some(&Tok::Ident("use".into())) => {
                i += 2;
                use_tree(&toks, &mut i, &[], &mut Vec::new());
            }
            Tok::Ident(kw) if kw == "use" => {
                i += 1;
                let mut paths = Vec::new();
                use_tree(&toks, &mut i, &[], &mut paths);
                into.refs.entry(current).or_default().extend(paths);
            }
            Tok::Ident(first)
                if toks.get(i + 1) == Some(&Tok::Path) && !matches!(toks.get(i.wrapping_sub(1)), Some(Tok::Path)) =>
            {
                let mut path = vec![first.clone()];
                let mut j = i + 1;
                while toks.get(j) == Some(&Tok::Path) {
                    match toks.get(j + 1) {
                        Some(Tok::Ident(n)) => path.push(n.clone()),
                        _ => break,
                    }
                    j += 2;
                }
                into.refs.entry(current).or_default().push(path);
                i = j;
            }
            _ => i += 1,
        }
    }
}

/// The file of module `path` of a crate rooted at `src/<root>`.
fn module_file(src: &Path, path: &[String]) -> Option<PathBuf> {
    let rel: PathBuf = path.iter().collect();
    [src.join(&rel).with_extension("rs"), src.join(&rel).join("mod.rs")].into_iter().find(|p| p.is_file())
}

/// The module graph of one crate: module → the modules it imports.
fn graph(src: &Path, root: &str) -> BTreeMap<Vec<String>, BTreeSet<Vec<String>>> {
    let mut s = Scan::default();
    scan(&std::fs::read_to_string(src.join(root)).unwrap(), &[], &mut s);
    let mut done = 0;
    while done < s.files.len() {
        let module = s.files[done].clone();
        done += 1;
        if let Some(file) = module_file(src, &module) {
            scan(&std::fs::read_to_string(file).unwrap(), &module, &mut s);
        }
    }
    let mut known: BTreeSet<Vec<String>> = BTreeSet::from([vec![]]);
    for (parent, kids) in &s.children {
        for k in kids {
            known.insert(parent.iter().cloned().chain([k.clone()]).collect());
        }
    }
    let mut edges: BTreeMap<Vec<String>, BTreeSet<Vec<String>>> = BTreeMap::new();
    for (module, paths) in &s.refs {
        for path in paths {
            let absolute: Option<Vec<String>> = match path.first().map(String::as_str) {
                Some("crate") => Some(path[1..].to_vec()),
                Some("self") => Some(module.iter().cloned().chain(path[1..].iter().cloned()).collect()),
                Some("super") => {
                    let mut base = module.clone();
                    let mut rest = &path[..];
                    while rest.first().map(String::as_str) == Some("super") {
                        base.pop();
                        rest = &rest[1..];
                    }
                    Some(base.into_iter().chain(rest.iter().cloned()).collect())
                }
                Some(first) if s.children.get(module).is_some_and(|k| k.contains(first)) => {
                    Some(module.iter().cloned().chain(path.iter().cloned()).collect())
                }
                _ => None,
            };
            let Some(absolute) = absolute else { continue };
            let target = (0..=absolute.len()).rev().map(|n| absolute[..n].to_vec()).find(|p| known.contains(p));
            if let Some(target) = target.filter(|t| t != module) {
                edges.entry(module.clone()).or_default().insert(target);
            }
        }
    }
    edges
}

fn name(m: &[String]) -> String {
    if m.is_empty() { "crate".into() } else { m.join("::") }
}

/// Every pair of modules that import each other, directly or through others.
fn cycles(edges: &BTreeMap<Vec<String>, BTreeSet<Vec<String>>>) -> Vec<String> {
    let reach = |from: &Vec<String>| {
        let mut seen = BTreeSet::new();
        let mut todo = vec![from.clone()];
        while let Some(m) = todo.pop() {
            for next in edges.get(&m).into_iter().flatten() {
                if seen.insert(next.clone()) {
                    todo.push(next.clone());
                }
            }
        }
        seen
    };
    let mut found = Vec::new();
    for (m, targets) in edges {
        for t in targets {
            if reach(t).contains(m) {
                found.push(format!("{} imports {}, which imports it back", name(m), name(t)));
            }
        }
    }
    found
}

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_owned()
}

/// Every crate's `src/` and root file.
fn crates() -> Vec<(String, PathBuf, &'static str)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(workspace().join("crates")).unwrap() {
        let dir = entry.unwrap().path();
        let src = dir.join("src");
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        for root in ["lib.rs", "main.rs"] {
            if src.join(root).is_file() {
                out.push((name.clone(), src.clone(), root));
            }
        }
    }
    out.sort();
    out
}

#[test]
fn no_module_imports_a_module_that_imports_it_back() {
    let mut found = Vec::new();
    for (name, src, root) in crates() {
        for c in cycles(&graph(&src, root)) {
            found.push(format!("{name}: {c}"));
        }
    }
    assert!(found.is_empty(), "import circles:\n{}", found.join("\n"));
}

#[test]
fn the_gateway_composition_root_is_imported_by_no_module() {
    let src = workspace().join("crates/isx-gateway/src");
    let edges = graph(&src, "lib.rs");
    let server = vec!["server".to_owned()];
    let importers: Vec<String> =
        edges.iter().filter(|(m, t)| !m.is_empty() && t.contains(&server)).map(|(m, _)| name(m)).collect();
    assert!(importers.is_empty(), "server.rs is imported by {importers:?}");
}

#[test]
fn libraries_forbid_unsafe_and_crate_docs_open_with_a_layout() {
    for (name, src, root) in crates() {
        let text = std::fs::read_to_string(src.join(root)).unwrap();
        if root == "lib.rs" {
            assert!(text.contains("#![forbid(unsafe_code)]"), "{name} does not forbid unsafe code");
        }
        let doc: String = text.lines().take_while(|l| l.starts_with("//!")).collect::<Vec<_>>().join("\n");
        assert!(doc.contains("# Layout"), "{name}/src/{root}: its //! doc has no \"# Layout\" section");
    }
}

/// The scanner finds what it must, so that the checks above can fail.
#[test]
fn the_scanner_sees_imports_through_every_kind_of_path() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path();
    std::fs::write(
        src.join("lib.rs"),
        "//! x\nmod a;\nmod b;\nmod c;\nmod d { pub fn f() { super::a::g(); } }\n// use crate::b;\nconst S: &str = \"crate::c\";\n",
    )
    .unwrap();
    std::fs::write(src.join("a.rs"), "use crate::b::{self, X};\npub fn g() {}\n").unwrap();
    std::fs::create_dir(src.join("b")).unwrap();
    std::fs::write(src.join("b/mod.rs"), "mod inner;\nuse inner::Y;\npub struct X;\n").unwrap();
    std::fs::write(src.join("b/inner.rs"), "pub struct Y;\nfn h() { let _ = super::super::c::k; }\n").unwrap();
    std::fs::write(src.join("c.rs"), "pub use crate::a::g;\nfn k<'a>(x: &'a str) -> char { let _ = x; 'c' }\n")
        .unwrap();
    let edges = graph(src, "lib.rs");
    let m = |s: &str| s.split("::").map(str::to_owned).collect::<Vec<_>>();
    assert_eq!(edges.get(&m("a")), Some(&BTreeSet::from([m("b")])));
    assert_eq!(edges.get(&m("b")), Some(&BTreeSet::from([m("b::inner")])));
    assert_eq!(edges.get(&m("b::inner")), Some(&BTreeSet::from([m("c")])));
    assert_eq!(edges.get(&m("d")), Some(&BTreeSet::from([m("a")])), "an inline module's super is its parent");
    assert!(!edges.contains_key(&vec![]), "comments and strings are not imports: {edges:?}");
    assert!(!edges.contains_key(&m("c")), "lifetimes and char literals are not paths; a `pub use` is a re-export");
    assert!(cycles(&edges).is_empty());

    std::fs::write(src.join("b/mod.rs"), "mod inner;\nuse inner::Y;\npub struct X;\nfn z() { crate::a::g(); }\n")
        .unwrap();
    let found = cycles(&graph(src, "lib.rs"));
    assert!(found.contains(&"a imports b, which imports it back".to_owned()), "{found:?}");
}
