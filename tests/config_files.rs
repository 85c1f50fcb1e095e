//! Every file shipped in `config/` is a valid configuration.

use std::path::Path;

use dynamo_cache::Config;

#[test]
fn every_shipped_config_file_loads() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
    let mut checked = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            Config::load(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            checked.push(path);
        }
    }
    assert!(
        !checked.is_empty(),
        "no config files found in {}",
        dir.display()
    );
}

#[test]
fn the_commented_default_file_states_the_real_defaults() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/dynamo-cache.toml");
    assert_eq!(Config::load(&path).unwrap(), Config::default());
}
