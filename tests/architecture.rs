//! The import graph runs one way: spine ← producers (hmac, httpsig, jwt, mtls) ← consumers (authz,
//! rate_limit, audit) ← adapters (sign, grpc, pubsub, metrics, integration). The spine depends
//! on nothing above it, no producer imports another producer, no consumer imports a producer or
//! another consumer. Read from the sources (comments and doc links aside), so that a new
//! `use crate::...` that breaks the shape fails here.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

const SPINE: &[&str] = &[
    "body",
    "claims",
    "clock",
    "decision",
    "env",
    "error",
    "fuzz",
    "future",
    "lib",
    "macros",
    "nonce",
    "peer",
    "periodic",
    "principal",
    "public",
    "redis",
    "reject",
];
const PRODUCERS: &[&str] = &["hmac", "httpsig", "jwt", "mtls"];
const CONSUMERS: &[&str] = &["audit", "authz", "rate_limit"];
const ADAPTERS: &[&str] = &["grpc", "integration", "metrics", "pubsub", "sign"];

/// 0 spine, 1 producer, 2 consumer, 3 adapter.
fn rank(module: &str) -> usize {
    [SPINE, PRODUCERS, CONSUMERS, ADAPTERS]
        .iter()
        .position(|tier| tier.contains(&module))
        .unwrap_or_else(|| {
            panic!("module `{module}` is in no tier: add it to tests/architecture.rs")
        })
}

fn may_import(from: &str, to: &str) -> bool {
    from == to || rank(to) == 0 || rank(from) == 3
}

fn rust_files(dir: &Path, found: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, found);
        } else if path.extension().is_some_and(|e| e == "rs") {
            found.push(path);
        }
    }
}

/// The top-level module a source file belongs to (`src/jwt/keys.rs` → `jwt`).
fn module_of(src: &Path, file: &Path) -> Option<String> {
    let relative = file.strip_prefix(src).ok()?;
    let first = relative.components().next()?.as_os_str().to_str()?;
    (first != "bin").then(|| first.trim_end_matches(".rs").to_owned())
}

/// The modules a file names as `crate::<module>`, outside comments.
fn imports(source: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    for line in source.lines() {
        let code = line.split("//").next().unwrap_or_default();
        let mut rest = code;
        while let Some(at) = rest.find("crate::") {
            rest = &rest[at + "crate::".len()..];
            // `crate::{a::X, b}` names several paths; their first segments are what counts.
            let paths = match rest.strip_prefix('{') {
                Some(group) => group.split('}').next().unwrap_or_default(),
                None => rest,
            };
            for path in paths.split(',') {
                let name: String = path
                    .trim_start()
                    .chars()
                    .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                    .collect();
                if !name.is_empty() {
                    found.insert(name);
                }
                if !rest.starts_with('{') {
                    break;
                }
            }
        }
    }
    found
}

#[test]
fn the_import_graph_runs_one_way() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut violations = Vec::new();
    let mut edges = 0;
    for file in &files {
        let Some(from) = module_of(&src, file) else {
            continue;
        };
        // Every module has a tier, even one that imports only the spine.
        rank(&from);
        for to in imports(&std::fs::read_to_string(file).unwrap()) {
            edges += 1;
            if !may_import(&from, &to) {
                let file = file.strip_prefix(&src).unwrap().display();
                violations.push(format!("{from} → {to} (src/{file})"));
            }
        }
    }
    assert!(edges > 50, "the sources were not read ({edges} imports)");
    assert!(
        violations.is_empty(),
        "imports against the layering:\n{}",
        violations.join("\n")
    );
}

#[test]
fn the_check_sees_a_violation() {
    assert!(!may_import("jwt", "mtls"), "producer → producer");
    assert!(!may_import("rate_limit", "authz"), "consumer → consumer");
    assert!(!may_import("principal", "audit"), "spine → consumer");
    assert!(may_import("grpc", "jwt") && may_import("audit", "principal"));
    let found = imports("use crate::jwt::Claims; // crate::mtls\n/// [x](crate::audit::A)\n");
    assert_eq!(found.into_iter().collect::<Vec<_>>(), ["jwt"]);
    let grouped = imports("use crate::{BoxError, hmac::X, reject};\n");
    assert_eq!(grouped.into_iter().collect::<Vec<_>>(), ["hmac", "reject"]);
}
