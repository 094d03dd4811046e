//! docs/config.md stays in step with the config structs: every key the code accepts is documented
//! in the right table, and every documented key is accepted.

use fanout_server::config::Config;
use std::collections::BTreeSet;

/// Keys in the first column of the table under the heading that starts with `heading`.
fn documented(doc: &str, heading: &str) -> BTreeSet<String> {
    let start = doc
        .find(&format!("## {heading}"))
        .unwrap_or_else(|| panic!("docs/config.md lacks the section {heading}"));
    let section = &doc[start..];
    let section = match section[3..].find("\n## ") {
        Some(end) => &section[..end + 3],
        None => section,
    };
    section
        .lines()
        .filter_map(|l| l.strip_prefix("| `"))
        .filter_map(|l| l.split('`').next())
        .map(str::to_string)
        .collect()
}

fn keys(v: serde_json::Value) -> BTreeSet<String> {
    v.as_object().expect("an object").keys().cloned().collect()
}

#[test]
fn every_config_key_is_documented_and_every_documented_key_exists() {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/config.md"))
        .expect("docs/config.md");
    let config = Config::embedded_default();
    let app = config.apps[0].clone();
    let role = app.roles.values().next().cloned().expect("a role");

    assert_eq!(
        documented(&doc, "`[server]`"),
        keys(serde_json::to_value(&config.server).unwrap())
    );
    assert_eq!(
        documented(&doc, "`[media]`"),
        keys(serde_json::to_value(&config.media).unwrap())
    );
    let mut app_keys = keys(serde_json::to_value(&app).unwrap());
    app_keys.remove("roles"); // documented as its own table
    assert_eq!(documented(&doc, "`[[apps]]`"), app_keys);
    assert_eq!(
        documented(&doc, "`[apps.roles.NAME]`"),
        keys(serde_json::to_value(&role).unwrap())
    );
}
