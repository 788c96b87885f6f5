//! The routing corpus (`tests/corpus/routes.sql`): real-world statements, each with the route it must
//! get under the default configuration. Every mismatch is listed, not just the first.

use pgroute::classify::{Classifier, Route};
use pgroute::config::RoutingConfig;

fn entries(text: &str) -> Vec<(Route, String)> {
    let mut out = Vec::new();
    let mut current: Option<(Route, Vec<&str>)> = None;
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("-- expect: ") {
            if let Some((route, lines)) = current.take() {
                out.push((route, lines.join("\n").trim().to_owned()));
            }
            let route = match rest.split_whitespace().next() {
                Some("primary") => Route::Primary,
                Some("replica") => Route::Replica,
                other => panic!("bad expectation {other:?} in: {line}"),
            };
            current = Some((route, Vec::new()));
        } else if let Some((_, lines)) = current.as_mut() {
            lines.push(line);
        }
    }
    if let Some((route, lines)) = current {
        out.push((route, lines.join("\n").trim().to_owned()));
    }
    out
}

#[test]
fn every_corpus_statement_gets_its_expected_route() {
    let text = include_str!("corpus/routes.sql");
    let entries = entries(text);
    assert!(
        entries.len() >= 200,
        "corpus has {} statements",
        entries.len()
    );
    let classifier = Classifier::new(&RoutingConfig::default()).expect("default config");
    let mut wrong = Vec::new();
    for (expected, sql) in &entries {
        assert!(!sql.is_empty(), "empty statement in the corpus");
        // `None` (COMMIT alone and the like) routes with its batch: to the primary when alone.
        let got = classifier.classify(sql).map_or(Route::Primary, |d| d.route);
        if got != *expected {
            wrong.push(format!("expected {expected:?}, got {got:?}: {sql}"));
        }
    }
    assert!(
        wrong.is_empty(),
        "{} of {} statements misrouted:\n{}",
        wrong.len(),
        entries.len(),
        wrong.join("\n")
    );
}
