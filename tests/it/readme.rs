//! The README's configuration reference is the binary's: every flag `--help` shows is in the
//! table with its variable and default, every key the configuration has is in it with its real
//! default, and nothing in it is made up.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

use dynamo_cache::Config;
use dynamo_cache::config::TableCacheConfig;

fn readme() -> String {
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap()
}

/// One row of the README's configuration table.
#[derive(Debug)]
struct Row {
    key: Option<String>,
    flag: Option<String>,
    env: Option<String>,
    default: String,
}

fn unquote(cell: &str) -> String {
    cell.replace('`', "").trim().to_string()
}

fn reference_rows() -> Vec<Row> {
    let readme = readme();
    let section = &readme[readme
        .find("## Configuration")
        .expect("a Configuration section")..];
    let table = section
        .lines()
        .skip_while(|l| !l.starts_with("| key |"))
        .skip(2)
        .take_while(|l| l.starts_with('|'));
    let mut rows = Vec::new();
    for line in table {
        let cells: Vec<&str> = line.trim_matches('|').split('|').map(str::trim).collect();
        assert_eq!(cells.len(), 3, "{line}");
        let key = cells[0].starts_with('`').then(|| unquote(cells[0]));
        let (flag, env) = match cells[1].split_once(" / ") {
            Some((flag, env)) => (Some(unquote(flag)), Some(unquote(env))),
            None => (None, None),
        };
        rows.push(Row {
            key,
            flag,
            env,
            default: unquote(cells[2]),
        });
    }
    assert!(rows.len() > 10, "the table was not found: {rows:?}");
    rows
}

/// `serve --help` as option blocks: flag -> (env, documented default).
fn help_options() -> BTreeMap<String, (Option<String>, Option<String>)> {
    let out = Command::new(env!("CARGO_BIN_EXE_dynamo-cache"))
        .args(["serve", "--help"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    let mut options = BTreeMap::new();
    let mut current: Option<String> = None;
    for line in help.lines() {
        let trimmed = line.trim();
        if let Some(rest) = trimmed.strip_prefix("--") {
            let flag = format!("--{}", rest.split_whitespace().next().unwrap());
            current = Some(flag.clone());
            options.insert(flag, (None, None));
            continue;
        }
        if trimmed.starts_with("-h, --help") {
            current = None;
            continue;
        }
        let Some(flag) = &current else { continue };
        let bracketed = |label: &str| -> Option<String> {
            let at = trimmed.find(&format!("[{label}: "))?;
            let rest = &trimmed[at + label.len() + 3..];
            Some(rest[..rest.find(']')?].to_string())
        };
        let entry = options.get_mut(flag).unwrap();
        if let Some(env) = bracketed("env") {
            entry.0 = Some(env.trim_end_matches('=').to_string());
        }
        if let Some(default) = bracketed("default") {
            entry.1 = Some(default);
        }
    }
    assert!(options.len() >= 10, "{help}");
    options
}

#[test]
fn every_flag_in_help_is_in_the_reference_with_its_variable_and_default() {
    let rows = reference_rows();
    for (flag, (env, default)) in help_options() {
        let row = rows
            .iter()
            .find(|r| r.flag.as_deref() == Some(&flag))
            .unwrap_or_else(|| panic!("{flag} is not in the README's configuration table"));
        assert_eq!(row.env, env, "{flag}: variable");
        if let Some(default) = default {
            assert!(
                row.default.starts_with(&default),
                "{flag}: --help says {default:?}, the README {:?}",
                row.default
            );
        }
    }
}

#[test]
fn every_flag_in_the_reference_exists() {
    let help = help_options();
    for row in reference_rows() {
        if let Some(flag) = &row.flag {
            assert!(help.contains_key(flag), "{flag} is documented but unknown");
        }
    }
}

/// Every leaf key of a configuration, dotted, with its value.
fn leaves(prefix: &str, value: &toml::Value, out: &mut BTreeMap<String, toml::Value>) {
    match value {
        toml::Value::Table(table) => {
            for (k, v) in table {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                leaves(&key, v, out);
            }
        }
        other => {
            out.insert(prefix.to_string(), other.clone());
        }
    }
}

#[test]
fn every_config_key_is_in_the_reference_with_its_real_default() {
    let rows = reference_rows();
    let documented: BTreeSet<&str> = rows.iter().filter_map(|r| r.key.as_deref()).collect();

    // Every key there is, optional ones and a per-table section included.
    let mut full = Config {
        upstream: Some("http://example".into()),
        region: Some("eu-west-1".into()),
        ..Config::default()
    };
    full.streams.endpoint = Some("http://example".into());
    full.warm.from = Some("http://example".into());
    full.auth.credentials_file = Some("principals.toml".into());
    full.auth.admin_token_file = Some("token".into());
    full.tls.cert_file = Some("cert.pem".into());
    full.tls.key_file = Some("key.pem".into());
    full.dax_listen = Some("127.0.0.1:8111".parse().unwrap());
    full.dax_advertise = Some("10.0.0.1:8111".parse().unwrap());
    full.dax_attribute_lists_file = Some("lists".into());
    full.fleet.redis = vec!["redis://127.0.0.1:6379".into()];
    full.cache.tables.insert(
        "<name>".into(),
        TableCacheConfig {
            item_ttl_ms: Some(1),
            query_ttl_ms: Some(1),
            ..TableCacheConfig::default()
        },
    );
    let mut every = BTreeMap::new();
    leaves("", &toml::Value::try_from(&full).unwrap(), &mut every);
    let keys: BTreeSet<&str> = every.keys().map(String::as_str).collect();
    assert_eq!(keys, documented, "README keys vs configuration keys");

    // Where a default is a value, it is the real one.
    let mut defaults = BTreeMap::new();
    leaves(
        "",
        &toml::Value::try_from(Config::default()).unwrap(),
        &mut defaults,
    );
    for (key, value) in defaults {
        let row = rows
            .iter()
            .find(|r| r.key.as_deref() == Some(&key))
            .unwrap();
        let real = match value {
            toml::Value::String(s) => s,
            other => other.to_string(),
        };
        let stated = row
            .default
            .split_whitespace()
            .next()
            .unwrap()
            .trim_matches('"');
        assert_eq!(stated, real, "{key}: README default");
    }
}

/// The README's table of contents lists its sections, in order, with links GitHub resolves.
#[test]
fn the_table_of_contents_matches_the_sections() {
    let readme = readme();
    let sections: Vec<&str> = readme
        .lines()
        .filter_map(|l| l.strip_prefix("## "))
        .filter(|h| *h != "Contents")
        .collect();
    let contents = &readme[readme.find("## Contents").expect("a table of contents")..];
    let listed: Vec<(String, String)> = contents
        .lines()
        .skip(1)
        .skip_while(|l| l.is_empty())
        .take_while(|l| l.starts_with("- ["))
        .map(|l| {
            let (title, link) = l[3..].split_once("](#").unwrap();
            (title.to_string(), link.trim_end_matches(')').to_string())
        })
        .collect();
    let titles: Vec<&str> = listed.iter().map(|(t, _)| t.as_str()).collect();
    assert_eq!(titles, sections);
    for (title, link) in &listed {
        let anchor: String = title
            .to_lowercase()
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == ' ' || *c == '-')
            .map(|c| if c == ' ' { '-' } else { c })
            .collect();
        assert_eq!(link, &anchor, "{title}");
    }
}
