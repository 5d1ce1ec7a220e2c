//! The repository carries its own map: every pointer to a design document names a section of
//! `docs/ARCHITECTURE.md` that exists, and nothing points to a design file outside the repo.
//! Scans every text file of the workspace (not `target/` or hidden directories except `.ci`).
//! Also: the files and names of the "One exec's path" table exist.
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

const DOC: &str = "docs/ARCHITECTURE.md";
/// Built at run time so this file does not match itself.
fn outside_doc_name() -> String {
    ["DESIGN", ".md"].concat()
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("sensor-proto/ has a parent")
        .to_path_buf()
}

/// GitHub's heading anchor: lowercase, punctuation removed, spaces become `-`.
fn slug(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}

/// Anchors of every Markdown heading outside code fences.
fn anchors(markdown: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut fenced = false;
    for line in markdown.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if fenced {
            continue;
        }
        let hashes = line.chars().take_while(|&c| c == '#').count();
        if (1..=6).contains(&hashes) && line[hashes..].starts_with(' ') {
            out.insert(slug(&line[hashes..]));
        }
    }
    out
}

/// The anchors that follow `prefix` in `text` (e.g. `ARCHITECTURE.md#` or `](#`).
fn links_after<'a>(text: &'a str, prefix: &str) -> Vec<&'a str> {
    text.match_indices(prefix)
        .map(|(i, _)| {
            let rest = &text[i + prefix.len()..];
            let end = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '_'))
                .unwrap_or(rest.len());
            &rest[..end]
        })
        .collect()
}

fn text_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        let Ok(kind) = entry.file_type() else {
            continue;
        };
        if kind.is_dir() {
            if name == "target" || (name.starts_with('.') && name != ".ci") {
                continue;
            }
            text_files(&path, out);
        } else if kind.is_file() {
            out.push(path);
        }
    }
}

#[test]
fn slug_matches_github() {
    assert_eq!(slug(" Kernel-user contract"), "kernel-user-contract");
    assert_eq!(slug(" Logins (wtmp/btmp)"), "logins-wtmpbtmp");
    assert_eq!(slug(" /proc"), "proc");
    assert_eq!(
        links_after("see docs/ARCHITECTURE.md#event-model).", "ARCHITECTURE.md#"),
        ["event-model"]
    );
}

#[test]
fn every_design_pointer_names_an_existing_section_in_the_repo() {
    let root = repo_root();
    let doc = std::fs::read_to_string(root.join(DOC)).expect("docs/ARCHITECTURE.md exists");
    let known = anchors(&doc);
    assert!(known.contains("event-model"), "{known:?}");

    let mut files = Vec::new();
    text_files(&root, &mut files);
    assert!(files.len() > 100, "scanned only {} files", files.len());
    let outside = outside_doc_name();
    let mut problems = Vec::new();
    let mut pointers = 0;
    for path in &files {
        let Ok(text) = std::fs::read_to_string(path) else {
            continue; // not UTF-8: a binary fixture
        };
        let rel = path
            .strip_prefix(&root)
            .unwrap_or(path)
            .display()
            .to_string();
        for (n, line) in text.lines().enumerate() {
            if line.contains(&outside) {
                problems.push(format!("{rel}:{}: points outside the repo: {line}", n + 1));
            }
            for anchor in links_after(line, "ARCHITECTURE.md#") {
                if anchor.is_empty() {
                    continue; // a pattern, not a link (as in this file)
                }
                pointers += 1;
                if !known.contains(anchor) {
                    problems.push(format!("{rel}:{}: no section #{anchor} in {DOC}", n + 1));
                }
            }
        }
    }
    for anchor in links_after(&doc, "](#") {
        if !known.contains(anchor) {
            problems.push(format!("{DOC}: internal link to missing #{anchor}"));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    assert!(pointers >= 9, "only {pointers} pointers into {DOC} found");

    let readme = std::fs::read_to_string(root.join("README.md")).expect("README.md");
    assert!(readme.contains(DOC), "README.md does not link {DOC}");
}

/// The rows of the table under "One exec's path": (file, names in its row's last column).
fn exec_path_rows(doc: &str) -> (Vec<(String, Vec<String>)>, String) {
    let start = doc
        .find("### One exec's path")
        .expect("docs/ARCHITECTURE.md has \"One exec's path\"");
    let section = &doc[start..];
    let section = &section[..section[4..].find("\n#").map_or(section.len(), |i| i + 4)];
    let ticked = |cell: &str| -> Vec<String> {
        cell.split('`')
            .skip(1)
            .step_by(2)
            .map(str::to_string)
            .collect()
    };
    let mut rows = Vec::new();
    for line in section.lines() {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        // "| n | `file` | what runs |" splits into ["", n, file, what, ""].
        if cells.len() != 5 || cells[1].parse::<u32>().is_err() {
            continue;
        }
        let file = ticked(cells[2])
            .into_iter()
            .next()
            .expect("a file in `backticks`");
        let names = ticked(cells[3])
            .iter()
            .flat_map(|t| {
                t.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .filter(|w| !w.is_empty())
                    .map(str::to_string)
                    .collect::<Vec<_>>()
            })
            .collect();
        rows.push((file, names));
    }
    (rows, section.to_string())
}

/// The hand count of one exec's files stays true when files move or functions are renamed:
/// every file in the table exists and holds the names its row gives, and the total stated
/// under the table is the number of rows.
#[test]
fn the_exec_path_table_names_files_and_functions_that_exist() {
    let root = repo_root();
    let doc = std::fs::read_to_string(root.join(DOC)).expect("docs/ARCHITECTURE.md exists");
    let (rows, section) = exec_path_rows(&doc);
    assert!(rows.len() > 10, "only {} rows found", rows.len());
    let mut problems = Vec::new();
    for (file, names) in &rows {
        let Ok(text) = std::fs::read_to_string(root.join(file)) else {
            problems.push(format!("{file}: no such file"));
            continue;
        };
        for name in names {
            if !text.contains(name.as_str()) {
                problems.push(format!("{file}: does not contain {name}"));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    let total = format!("**{} files**", rows.len());
    assert!(
        section.contains(&total),
        "the section does not state {total}"
    );
}
