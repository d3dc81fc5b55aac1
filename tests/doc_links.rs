//! The documents' links cannot rot: every relative link in `README.md`, `docs/*.md` and the
//! other READMEs names a file or folder that exists, and every `#anchor` names a heading of
//! the Markdown file it points into (GitHub's rule: lower case, punctuation dropped, spaces
//! as hyphens, `-1`, `-2` for repeats). Web links are not fetched: tests stay on loopback.
//! And every repository path written in backticks (`src/reactor/turn.rs`) in the documents
//! and the code's comments names a file that exists, so moving a file cannot leave the
//! minimal example's list, the tour or a module doc pointing at nothing.
//! (Links in Rust doc comments are checked by `cargo doc` with warnings as errors, in CI.)

use std::collections::HashSet;
use std::fs;
use std::path::{Path, PathBuf};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// The Markdown a reader follows: the README, everything under `docs/`, and the READMEs of
/// the folders the README links to.
fn documents() -> Vec<PathBuf> {
    let root = Path::new(ROOT);
    let mut files = vec![
        root.join("README.md"),
        root.join("tests/README.md"),
        root.join("benchmarks/README.md"),
        root.join("fuzz/README.md"),
    ];
    if let Ok(entries) = fs::read_dir(root.join("docs")) {
        for entry in entries.flatten() {
            let path = entry.path();
            if path.extension().is_some_and(|ext| ext == "md") {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

/// The lines of `text` outside fenced code blocks, with their line numbers.
fn prose_lines(text: &str) -> Vec<(usize, &str)> {
    let mut in_fence = false;
    let mut lines = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if line.trim_start().starts_with("```") {
            in_fence = !in_fence;
        } else if !in_fence {
            lines.push((n + 1, line));
        }
    }
    lines
}

/// `line` without its inline code spans (a `](x)` inside backticks is not a link).
fn without_code_spans(line: &str) -> String {
    let mut out = String::new();
    for (i, part) in line.split('`').enumerate() {
        if i % 2 == 0 {
            out.push_str(part);
        }
    }
    out
}

/// The targets of inline links `[text](target)` on one line.
fn link_targets(line: &str) -> Vec<String> {
    let line = without_code_spans(line);
    let mut targets = Vec::new();
    let mut rest = line.as_str();
    while let Some(at) = rest.find("](") {
        let after = &rest[at + 2..];
        let Some(end) = after.find(')') else { break };
        let target = after[..end].split_whitespace().next().unwrap_or("");
        targets.push(target.to_string());
        rest = &after[end..];
    }
    targets
}

/// GitHub's anchor for a heading's text.
fn slug(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || *c == ' ' || *c == '-' || *c == '_')
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

/// Every anchor a Markdown file offers: one per heading, numbered when repeated.
fn anchors(text: &str) -> HashSet<String> {
    let mut seen = HashSet::new();
    for (_, line) in prose_lines(text) {
        let Some(heading) = line.strip_prefix('#') else {
            continue;
        };
        let heading = heading.trim_start_matches('#');
        if !heading.starts_with(' ') {
            continue;
        }
        let base = slug(&heading.replace('`', ""));
        let mut anchor = base.clone();
        let mut n = 0;
        while seen.contains(&anchor) {
            n += 1;
            anchor = format!("{base}-{n}");
        }
        seen.insert(anchor);
    }
    seen
}

/// What is wrong with one link from `from`, if anything.
fn check(from: &Path, text: &str, target: &str) -> Option<String> {
    if target.is_empty() {
        return Some("empty link".into());
    }
    if target.contains("://") || target.starts_with("mailto:") {
        return None;
    }
    let (file, anchor) = match target.split_once('#') {
        Some((file, anchor)) => (file, Some(anchor)),
        None => (target, None),
    };
    let (path, target_text) = if file.is_empty() {
        (from.to_path_buf(), Some(text.to_string()))
    } else {
        let path = from.parent().expect("a folder").join(file);
        if !path.exists() {
            return Some(format!("{} does not exist", path.display()));
        }
        (path.clone(), fs::read_to_string(&path).ok())
    };
    let anchor = anchor?;
    if !path.extension().is_some_and(|ext| ext == "md") {
        return Some(format!("anchor #{anchor} into a file that is not Markdown"));
    }
    let offered = anchors(&target_text.unwrap_or_default());
    (!offered.contains(anchor)).then(|| format!("{} has no heading for #{anchor}", path.display()))
}

/// Every relative link in the documents resolves: the file exists and the anchor is a heading.
#[test]
fn every_relative_link_and_anchor_resolves() {
    let mut broken = Vec::new();
    let mut checked = 0;
    for doc in documents() {
        let text = fs::read_to_string(&doc).unwrap_or_else(|e| panic!("{}: {e}", doc.display()));
        for (line_no, line) in prose_lines(&text) {
            for target in link_targets(line) {
                checked += 1;
                if let Some(problem) = check(&doc, &text, &target) {
                    broken.push(format!(
                        "{}:{line_no}: ({target}): {problem}",
                        doc.display()
                    ));
                }
            }
        }
    }
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
    assert!(
        checked > 10,
        "only {checked} links found: is the parser broken?"
    );
}

/// The top-level folders whose paths are checked when written in backticks.
const TREE: [&str; 12] = [
    "src/",
    "tests/",
    "scripts/",
    "examples/",
    "benches/",
    "docs/",
    "loadgen/",
    "testkit/",
    "contrib/",
    "fuzz/",
    "benchmarks/",
    ".ci/",
];

/// Every file under `dir` (recursively) whose name ends with one of `suffixes`, except build
/// output.
fn files_under(dir: &Path, suffixes: &[&str], found: &mut Vec<PathBuf>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if path.is_dir() {
            if name != "target" && !name.starts_with('.') {
                files_under(&path, suffixes, found);
            }
        } else if suffixes.iter().any(|suffix| name.ends_with(suffix)) {
            found.push(path);
        }
    }
}

/// The repository paths in backticks in `text`: spans that start with a top-level folder and
/// hold one plain path (no spaces, globs, braces or placeholders).
fn backticked_paths(text: &str) -> Vec<String> {
    let mut paths = Vec::new();
    for (i, span) in text.split('`').enumerate() {
        let path = span.trim_end_matches(['.', ',', ':', ';', ')']);
        // `file.rs:120` names a line of `file.rs`.
        let path = match path.rsplit_once(':') {
            Some((file, line)) if line.chars().all(|c| c.is_ascii_digit()) => file,
            _ => path,
        };
        let plain = !path.contains(|c: char| c.is_whitespace() || "{}*<>$|".contains(c));
        if i % 2 == 1 && plain && TREE.iter().any(|top| path.starts_with(top)) {
            paths.push(path.to_string());
        }
    }
    paths
}

/// Every repository path named in backticks in the documents, the code and the scripts
/// exists: from the repository's root, or from the crate the file is in (`loadgen/`, ...).
/// What cargo-fuzz generates (`fuzz/artifacts/`, `fuzz/corpus/`) is not in the repository.
#[test]
fn every_path_in_backticks_exists() {
    let root = Path::new(ROOT);
    let mut files = documents();
    for dir in [
        "src", "examples", "tests", "benches", "loadgen", "testkit", "fuzz", "scripts",
    ] {
        files_under(
            &root.join(dir),
            &[".rs", ".md", ".sh", ".py", "README"],
            &mut files,
        );
    }
    files.push(root.join(".ci/run"));
    let mut missing = Vec::new();
    let mut checked = 0;
    for file in files {
        if file.ends_with("tests/doc_links.rs") {
            continue; // its own samples below are made up
        }
        let Ok(text) = fs::read_to_string(&file) else {
            continue;
        };
        let relative = file.strip_prefix(root).expect("under the root");
        let crate_dir = root.join(relative.components().next().expect("a first component"));
        for path in backticked_paths(&text) {
            if path.contains("/artifacts/") || path.contains("/corpus/") {
                continue;
            }
            checked += 1;
            if !root.join(&path).exists() && !crate_dir.join(&path).exists() {
                missing.push(format!("{}: `{path}`", relative.display()));
            }
        }
    }
    missing.sort();
    missing.dedup();
    assert!(
        missing.is_empty(),
        "paths that do not exist:\n{}",
        missing.join("\n")
    );
    assert!(
        checked > 50,
        "only {checked} paths found: is the scanner broken?"
    );
}

/// The checker itself: GitHub's anchors, code spans and fences ignored, a missing file and a
/// missing heading reported.
#[test]
fn the_checker_finds_what_it_should() {
    assert_eq!(
        slug("Many reactors: --threads N"),
        "many-reactors---threads-n"
    );
    let text = "# A\n## Two words\n## Two words\n```\n# not a heading\n```\n";
    let offered = anchors(text);
    assert!(
        offered.contains("a") && offered.contains("two-words") && offered.contains("two-words-1")
    );
    assert!(!offered.contains("not-a-heading"));
    assert_eq!(
        link_targets("see [x](a.md#b) and `[y](no)` and [z](c \"t\")"),
        ["a.md#b", "c"]
    );
    let readme = Path::new(ROOT).join("README.md");
    assert!(check(&readme, text, "#two-words-1").is_none());
    assert!(check(&readme, text, "#three").is_some());
    assert!(check(&readme, text, "no/such/file.md").is_some());
    assert!(check(&readme, text, "Cargo.toml").is_none());
    assert!(check(&readme, text, "https://example.com/x").is_none());
    let paths =
        backticked_paths("see `src/lib.rs`, `src/service/{a,b}.rs`, `src/x.rs:3` and `cargo test`");
    assert_eq!(paths, ["src/lib.rs", "src/x.rs"]);
}
