//! Every file shipped in `config/` is a valid configuration, and `check-config` prints the
//! effective configuration of each.

use std::path::{Path, PathBuf};
use std::process::Command;

use dynamo_cache::Config;

/// The example credentials file: not a configuration, loaded by its own test.
const PRINCIPALS: &str = "principals.toml";

fn shipped() -> Vec<PathBuf> {
    fn walk(dir: &Path, found: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, found);
            } else if path.extension().is_some_and(|e| e == "toml") && !path.ends_with(PRINCIPALS) {
                found.push(path);
            }
        }
    }
    let mut found = Vec::new();
    walk(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("config"),
        &mut found,
    );
    found.sort();
    found
}

#[test]
fn every_shipped_config_file_loads() {
    let files = shipped();
    let names: Vec<_> = files
        .iter()
        .map(|p| p.file_name().unwrap().to_str().unwrap())
        .collect();
    for expected in [
        "dynamo-cache.toml",
        "sidecar.toml",
        "shared-fleet.toml",
        "per-table-ttls.toml",
        "vm.toml",
    ] {
        assert!(names.contains(&expected), "{expected} missing: {names:?}");
    }
    for path in &files {
        Config::load(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    }
}

#[test]
fn the_example_credentials_file_loads_and_the_fleet_example_uses_it() {
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/examples");
    let principals = dynamo_cache::auth::Principals::load(&examples.join(PRINCIPALS)).unwrap();
    assert_eq!(principals.len(), 3);
    let fleet = Config::load(&examples.join("shared-fleet.toml")).unwrap();
    assert_eq!(fleet.auth.mode, dynamo_cache::config::AuthMode::Sigv4);
    // Named relative to the config file, found beside it.
    assert_eq!(
        fleet.auth.credentials_file.as_deref(),
        Some(examples.join(PRINCIPALS).as_path())
    );
}

#[test]
fn the_commented_default_file_states_the_real_defaults() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/dynamo-cache.toml");
    assert_eq!(Config::load(&path).unwrap(), Config::default());
}

#[test]
fn check_config_prints_the_effective_configuration() {
    for path in shipped() {
        let out = Command::new(env!("CARGO_BIN_EXE_dynamo-cache"))
            .arg("check-config")
            .arg(&path)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}: {out:?}", path.display());
        let printed: Config = toml::from_str(std::str::from_utf8(&out.stdout).unwrap())
            .unwrap_or_else(|e| panic!("{}: printed config does not parse: {e}", path.display()));
        assert_eq!(printed, Config::load(&path).unwrap(), "{}", path.display());
    }
}

/// The effective configuration is the file with the environment and flags applied, as
/// `serve` would run with it.
#[test]
fn check_config_applies_the_environment_and_flags() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/examples/sidecar.toml");
    let out = Command::new(env!("CARGO_BIN_EXE_dynamo-cache"))
        .arg("check-config")
        .arg(&path)
        .args(["--workers", "3"])
        .env("DYNAMO_CACHE_UPSTREAM", "http://127.0.0.1:4566")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let printed: Config = toml::from_str(std::str::from_utf8(&out.stdout).unwrap()).unwrap();
    let mut expected = Config::load(&path).unwrap();
    expected.workers = 3;
    expected.upstream = Some("http://127.0.0.1:4566".into());
    assert_eq!(printed, expected);
}

#[test]
fn check_config_rejects_a_bad_file_with_the_reason() {
    let dir = std::env::temp_dir().join(format!("dynamo-cache-cfg-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("bad.toml");
    std::fs::write(&path, "[cache]\nitem_ttl = 5\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_dynamo-cache"))
        .arg("check-config")
        .arg(&path)
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("item_ttl"), "{stderr}");
}

#[test]
fn the_per_table_example_means_what_its_comments_say() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/examples/per-table-ttls.toml");
    let config = Config::load(&path).unwrap();
    let tables = &config.cache.tables;
    assert!(!tables["accounts"].enabled);
    assert_eq!(tables["countries"].item_ttl_ms, Some(0));
    assert_eq!(tables["inventory"].query_ttl_ms, Some(0));
}
