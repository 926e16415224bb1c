//! The documentation's examples run, so they cannot drift from the tool.
//!
//! - Every ```` ```console ```` block of `README.md` and `docs/*.md` is run:
//!   each `$ ` line is a shell command (`isx` is this build's binary), and
//!   the lines after it, up to the next `$ ` line or the block's end, are its
//!   output (standard output and error, in order). `[..]` in an expected line
//!   matches any text within the line; a line `...` matches any number of
//!   lines; a last line `[exit N]` expects exit status N (otherwise 0). The
//!   commands of one file run in order against one gateway with every agency
//!   of `deploy/local/topology.toml` (and the operations node `ops`), started for the file on `127.0.0.1:0`
//!   over mTLS with a fresh PKI: `ISX_GATEWAY` and `ISX_PKI` point at it,
//!   and the working directory is the repository root.
//! - A ```` ```text ```` block (output shown without the command that makes
//!   it) is refused: output belongs in a console block.
//! - ```` ```sh ```` blocks show commands that do not end by themselves
//!   (servers, `isx up`, `--follow`) or that change the deployment; each
//!   `isx` command in them is checked to name a real subcommand
//!   (`isx SUBCOMMAND... --help` succeeds).
#![forbid(unsafe_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The most one documented command may take.
const LIMIT: Duration = Duration::from_secs(60);

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().unwrap()
}

/// One fenced block: its language, its first line number, its lines.
struct Block {
    lang: String,
    line: usize,
    lines: Vec<String>,
}

fn blocks(text: &str) -> Vec<Block> {
    let mut out = Vec::new();
    let mut open: Option<Block> = None;
    for (i, line) in text.lines().enumerate() {
        if let Some(fence) = line.strip_prefix("```") {
            match open.take() {
                Some(block) => out.push(block),
                None => open = Some(Block { lang: fence.trim().to_owned(), line: i + 1, lines: Vec::new() }),
            }
        } else if let Some(block) = open.as_mut() {
            block.lines.push(line.to_owned());
        }
    }
    out
}

/// One documented command and what it must print.
struct Example {
    command: String,
    expected: Vec<String>,
    status: i32,
    line: usize,
}

fn examples(block: &Block) -> Vec<Example> {
    let mut out: Vec<Example> = Vec::new();
    for (i, line) in block.lines.iter().enumerate() {
        if let Some(command) = line.strip_prefix("$ ") {
            out.push(Example { command: command.to_owned(), expected: vec![], status: 0, line: block.line + i + 1 });
        } else if let Some(last) = out.last_mut() {
            match line.strip_prefix("[exit ").and_then(|s| s.strip_suffix(']')) {
                Some(n) => last.status = n.parse().expect("[exit N] takes a number"),
                None => last.expected.push(line.trim_end().to_owned()),
            }
        } else {
            panic!("line {}: a console block starts with a `$ ` command", block.line + i + 1);
        }
    }
    out
}

/// Whether `actual` matches `pattern`, where `[..]` stands for any text.
fn line_matches(pattern: &str, actual: &str) -> bool {
    let parts: Vec<&str> = pattern.split("[..]").collect();
    if parts.len() == 1 {
        return pattern == actual;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !actual.starts_with(first) || !actual[first.len()..].ends_with(last) {
        return false;
    }
    let mut rest = &actual[first.len()..actual.len() - last.len()];
    for part in &parts[1..parts.len() - 1] {
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    true
}

/// Whether `actual` matches `expected` line by line, with `...` lines
/// standing for any number of lines.
fn lines_match(expected: &[String], actual: &[&str]) -> bool {
    match expected.split_first() {
        None => actual.is_empty(),
        Some((first, rest)) if first == "..." => (0..=actual.len()).any(|skip| lines_match(rest, &actual[skip..])),
        Some((first, rest)) => {
            actual.split_first().is_some_and(|(a, more)| line_matches(first, a) && lines_match(rest, more))
        }
    }
}

/// Runs `command` with `sh` in the repository root, `isx` first on the PATH.
fn run(command: &str, env: &[(&str, String)]) -> (i32, String) {
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_isx")).parent().unwrap().to_owned();
    let path = format!("{}:{}", bin_dir.display(), std::env::var("PATH").unwrap_or_default());
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(format!("exec 2>&1; {command}"))
        .current_dir(repo())
        .env("PATH", path)
        .env_remove("ISX_AS")
        .env_remove("ISX_OFFICER")
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .expect("sh runs");
    let mut stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut out = Vec::new();
        std::io::Read::read_to_end(&mut stdout, &mut out).map(|_| out)
    });
    let deadline = Instant::now() + LIMIT;
    // Bounded: polls until the deadline, then kills the command.
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("`{command}` still runs after {LIMIT:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let out = reader.join().unwrap().unwrap();
    (status.code().unwrap_or(-1), String::from_utf8_lossy(&out).into_owned())
}

/// Runs every console block of `file` against a fresh topology; returns the problems.
fn check_file(rt: &tokio::runtime::Runtime, file: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(file).unwrap();
    let name = file.strip_prefix(repo()).unwrap_or(file).display().to_string();
    let all = blocks(&text);
    let mut problems = Vec::new();
    for b in all.iter().filter(|b| b.lang == "text") {
        problems.push(format!(
            "{name}:{}: a `text` block shows output without its command; make it a `console` block",
            b.line
        ));
    }
    for b in all.iter().filter(|b| b.lang == "sh") {
        for (i, line) in b.lines.iter().enumerate() {
            if let Some(problem) = check_sh_line(line) {
                problems.push(format!("{name}:{}: {problem}", b.line + i + 1));
            }
        }
    }
    let console: Vec<&Block> = all.iter().filter(|b| b.lang == "console").collect();
    if console.is_empty() {
        return problems;
    }
    let topo = rt
        .block_on(isx_testkit::Topology::start(isx_testkit::TopologySpec::default_agencies().with_admin()))
        .expect("a topology starts");
    let env = [
        ("ISX_GATEWAY", topo.gateway_addr().to_string().replace("127.0.0.1", "localhost")),
        ("ISX_PKI", topo.pki_dir().display().to_string()),
    ];
    for block in console {
        for ex in examples(block) {
            let (status, out) = run(&ex.command, &env);
            let mut actual: Vec<&str> = out.lines().map(str::trim_end).collect();
            while actual.last().is_some_and(|l| l.is_empty()) {
                actual.pop();
            }
            if status != ex.status || !lines_match(&ex.expected, &actual) {
                problems.push(format!(
                    "{name}:{}: `{}` exited {status} (documented: {}) and printed:\n{}\n--- the documentation says:\n{}",
                    ex.line,
                    ex.command,
                    ex.status,
                    out.trim_end(),
                    ex.expected.join("\n")
                ));
            }
        }
    }
    rt.block_on(topo.shutdown());
    problems
}

/// Checks that an `isx` command line of a `sh` block names real subcommands.
fn check_sh_line(line: &str) -> Option<String> {
    let command = line.split(" #").next().unwrap_or_default().trim();
    let words = shell_words(command);
    if words.first().map(String::as_str) != Some("isx") {
        return None;
    }
    // The subcommand path: the words before the first option or argument.
    let path: Vec<&str> = words[1..]
        .iter()
        .map(String::as_str)
        .take_while(|w| w.chars().all(|c| c.is_ascii_lowercase() || c == '-') && !w.starts_with('-'))
        .collect();
    let (status, out) = run(&format!("isx {} --help", path.join(" ")), &[]);
    (status != 0).then(|| format!("`{command}`: `isx {} --help` fails: {}", path.join(" "), out.trim()))
}

/// Splits a command line into words, honouring double and single quotes.
fn shell_words(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut quote: Option<char> = None;
    let mut in_word = false;
    for c in line.chars() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), c) => word.push(c),
            (None, '"' | '\'') => {
                quote = Some(c);
                in_word = true;
            }
            (None, c) if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            (None, c) => {
                word.push(c);
                in_word = true;
            }
        }
    }
    if in_word {
        words.push(word);
    }
    words
}

#[test]
fn the_documented_examples_print_what_the_documentation_says() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut files = vec![repo().join("README.md")];
    let mut docs: Vec<PathBuf> = std::fs::read_dir(repo().join("docs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    docs.sort();
    files.extend(docs);
    let problems: Vec<String> = files.iter().flat_map(|f| check_file(&rt, f)).collect();
    assert!(problems.is_empty(), "{} documented example(s) do not hold:\n\n{}", problems.len(), problems.join("\n\n"));
}

#[test]
fn patterns_match_what_they_say() {
    assert!(line_matches("alert [..] accepted at [..]", "alert 01J accepted at 2026-12-02T00:00:00Z"));
    assert!(!line_matches("alert [..] accepted", "alert 01J refused"));
    assert!(line_matches("exact", "exact") && !line_matches("exact", "exactly"));
    let lines = |s: &str| s.lines().map(str::to_owned).collect::<Vec<_>>();
    assert!(lines_match(&lines("a\n...\nz"), &["a", "b", "c", "z"]));
    assert!(lines_match(&lines("a\n...\nz"), &["a", "z"]));
    assert!(!lines_match(&lines("a\nz"), &["a", "b", "z"]), "without `...` every line is shown");
    assert!(!lines_match(&lines("a"), &["a", "b"]));
    assert_eq!(
        shell_words(r#"isx lookup --name "Rinaldi, Marco" --x 'a b'"#),
        ["isx", "lookup", "--name", "Rinaldi, Marco", "--x", "a b"]
    );
}
