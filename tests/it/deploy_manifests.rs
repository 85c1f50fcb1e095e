//! The deployment files in `deploy/` cannot be started here (no container engine), so they are
//! checked against the binary instead: they parse; the environment they give the proxy is a
//! valid configuration made only of variables the CLI knows; ports, probe paths and the binary
//! name are the ones the proxy really uses; drain deadlines fit in the grace periods.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{CommandFactory, Parser};
use dynamo_cache::Config;
use dynamo_cache::cli::{Cli, Command};
use serde_yaml::Value;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(path: &str) -> String {
    let path = root().join(path);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn yaml_documents(path: &str) -> Vec<Value> {
    use serde::Deserialize;
    serde_yaml::Deserializer::from_str(&read(path))
        .map(|doc| Value::deserialize(doc).unwrap_or_else(|e| panic!("{path}: {e}")))
        .filter(|doc| !doc.is_null())
        .collect()
}

fn kind<'a>(docs: &'a [Value], kind: &str) -> Vec<&'a Value> {
    docs.iter().filter(|d| d["kind"] == kind).collect()
}

/// Every `DYNAMO_CACHE_*` variable the CLI reads, with the flag that reads it and whether that
/// flag takes a value (an on/off flag does not).
fn cli_env_vars() -> Vec<(String, String, bool)> {
    let mut vars = Vec::new();
    let cli = Cli::command();
    let serve = cli.find_subcommand("serve").unwrap();
    for arg in serve.get_arguments() {
        if let (Some(env), Some(long)) = (arg.get_env(), arg.get_long()) {
            let takes_value = arg.get_action().takes_values();
            vars.push((
                env.to_str().unwrap().to_string(),
                long.to_string(),
                takes_value,
            ));
        }
    }
    vars
}

/// The configuration `serve` would run with, given these `DYNAMO_CACHE_*` variables (and
/// `files`, to stand in for paths they name). Panics on a variable the CLI does not read.
fn config_from_env(env: &[(String, String)], files: &[(&str, &str)]) -> Config {
    let known = cli_env_vars();
    let mut argv = vec!["dynamo-cache".to_string(), "serve".to_string()];
    let scratch = std::env::temp_dir().join(format!(
        "dynamo-cache-deploy-{}-{}",
        std::process::id(),
        fastrand::u64(..)
    ));
    for (name, value) in env.iter().filter(|(n, _)| n.starts_with("DYNAMO_CACHE_")) {
        let (_, flag, takes_value) = known
            .iter()
            .find(|(env, _, _)| env == name)
            .unwrap_or_else(|| panic!("{name} is not a variable dynamo-cache reads"));
        let mut value = value.clone();
        if let Some((_, text)) = files.iter().find(|(path, _)| *path == value) {
            std::fs::create_dir_all(&scratch).unwrap();
            let local = scratch.join("config.toml");
            std::fs::write(&local, text).unwrap();
            value = local.to_str().unwrap().to_string();
        }
        match (takes_value, value.as_str()) {
            (true, _) => argv.push(format!("--{flag}={value}")),
            // How clap reads an on/off flag from the environment.
            (false, "true" | "1" | "yes" | "on") => argv.push(format!("--{flag}")),
            (false, _) => {}
        }
    }
    let cli = Cli::try_parse_from(&argv).unwrap_or_else(|e| panic!("{argv:?}: {e}"));
    let Some(Command::Serve(args)) = cli.command else {
        panic!("serve expected")
    };
    let config = args.config().unwrap_or_else(|e| panic!("{argv:?}: {e}"));
    let _ = std::fs::remove_dir_all(&scratch);
    config
}

/// A Kubernetes container's `env` as pairs.
fn k8s_env(container: &Value) -> Vec<(String, String)> {
    container["env"]
        .as_sequence()
        .map(|env| {
            env.iter()
                .map(|e| {
                    let name = e["name"].as_str().unwrap().to_string();
                    let value = e["value"].as_str().unwrap_or_default().to_string();
                    (name, value)
                })
                .collect()
        })
        .unwrap_or_default()
}

fn container<'a>(list: &'a Value, name: &str) -> &'a Value {
    list.as_sequence()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no container {name}"))
}

/// The port number a probe names (by name or number) in `container`.
fn probe_port(container: &Value, probe: &Value) -> u16 {
    let port = &probe["httpGet"]["port"];
    if let Some(n) = port.as_u64() {
        return n as u16;
    }
    let name = port.as_str().unwrap();
    container["ports"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|p| p["name"] == name)
        .unwrap_or_else(|| panic!("no port named {name}"))["containerPort"]
        .as_u64()
        .unwrap() as u16
}

/// Checks a Kubernetes proxy container's probes against its configuration; returns the
/// probe paths seen.
fn check_probes(container: &Value, config: &Config) -> Vec<String> {
    let mut paths = Vec::new();
    for probe in ["startupProbe", "readinessProbe", "livenessProbe"] {
        let probe_def = &container[probe];
        if probe_def.is_null() {
            continue;
        }
        assert_eq!(
            probe_port(container, probe_def),
            config.admin_listen.port(),
            "{probe} must target the admin listener"
        );
        assert!(
            !config.admin_listen.ip().is_loopback(),
            "the kubelet cannot reach an admin listener on loopback"
        );
        paths.push(probe_def["httpGet"]["path"].as_str().unwrap().to_string());
    }
    assert!(paths.contains(&"/healthz".to_string()) && paths.contains(&"/readyz".to_string()));
    paths
}

fn grace_covers_drain(grace: Duration, pre_stop: Duration, config: &Config, what: &str) {
    assert!(
        grace > pre_stop + config.drain_timeout(),
        "{what}: grace {grace:?} must exceed preStop {pre_stop:?} + drain {:?}",
        config.drain_timeout()
    );
}

fn pre_stop_sleep(container: &Value) -> Duration {
    Duration::from_secs(
        container["lifecycle"]["preStop"]["sleep"]["seconds"]
            .as_u64()
            .unwrap_or(0),
    )
}

/// The app's endpoint variable must name the proxy's data listener.
fn assert_app_points_at(app_env: &[(String, String)], config: &Config) {
    let endpoint = app_env
        .iter()
        .find(|(n, _)| n == "AWS_ENDPOINT_URL_DYNAMODB")
        .map(|(_, v)| v.as_str())
        .expect("the application should get AWS_ENDPOINT_URL_DYNAMODB");
    assert_eq!(endpoint, format!("http://{}", config.listen));
}

#[test]
fn dockerfile_builds_the_binary_and_runs_it_unprivileged_with_a_healthcheck() {
    let dockerfile = read("deploy/Dockerfile");
    let lines: Vec<&str> = dockerfile
        .lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#'))
        .collect();
    let froms: Vec<&&str> = lines.iter().filter(|l| l.starts_with("FROM ")).collect();
    assert!(froms.len() >= 2, "multi-stage build expected: {froms:?}");

    // The builder's Rust is at least the crate's rust-version.
    let builder = froms[0].split_whitespace().nth(1).unwrap();
    let version = builder
        .trim_start_matches("rust:")
        .split('-')
        .next()
        .unwrap();
    let manifest: toml::Table = toml::from_str(&read("Cargo.toml")).unwrap();
    let msrv = manifest["package"]["rust-version"].as_str().unwrap();
    let parse = |v: &str| -> Vec<u32> { v.split('.').map(|p| p.parse().unwrap()).collect() };
    assert!(
        parse(version) >= parse(msrv),
        "{builder} is older than {msrv}"
    );

    let bin = manifest["bin"].as_array().unwrap()[0]["name"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(dockerfile.contains(&format!("--bin {bin}")));
    assert!(dockerfile.contains(&format!("target/release/{bin}")));
    let installed = format!("/usr/local/bin/{bin}");
    let entrypoint = lines
        .iter()
        .find(|l| l.starts_with("ENTRYPOINT"))
        .expect("ENTRYPOINT");
    let entrypoint: Vec<String> =
        serde_json::from_str(entrypoint.trim_start_matches("ENTRYPOINT").trim()).unwrap();
    assert_eq!(entrypoint, std::slice::from_ref(&installed));
    let cmd = lines.iter().rfind(|l| l.starts_with("CMD ")).expect("CMD");
    let cmd: Vec<String> = serde_json::from_str(cmd.trim_start_matches("CMD").trim()).unwrap();
    Cli::try_parse_from(std::iter::once(bin.clone()).chain(cmd)).unwrap();

    // The health check runs the same binary's `healthcheck` subcommand (no shell in the image).
    let health_at = dockerfile.find("HEALTHCHECK").expect("HEALTHCHECK");
    let health = &dockerfile[health_at..];
    let health: Vec<String> =
        serde_json::from_str(&health[health.find('[').unwrap()..=health.find(']').unwrap()])
            .unwrap();
    assert_eq!(health[0], installed);
    let parsed = Cli::try_parse_from(std::iter::once(bin).chain(health[1..].iter().cloned()))
        .unwrap_or_else(|e| panic!("{health:?}: {e}"));
    assert!(matches!(parsed.command, Some(Command::Healthcheck { .. })));

    let user = lines
        .iter()
        .rfind(|l| l.starts_with("USER "))
        .expect("USER");
    let uid = user[5..].split(':').next().unwrap().trim();
    assert!(uid != "0" && uid != "root", "{user}");

    let exposed: BTreeSet<u16> = lines
        .iter()
        .filter(|l| l.starts_with("EXPOSE "))
        .flat_map(|l| l[7..].split_whitespace().map(|p| p.parse().unwrap()))
        .collect();
    let defaults = Config::default();
    assert_eq!(
        exposed,
        BTreeSet::from([defaults.listen.port(), defaults.admin_listen.port()])
    );
    assert!(root().join("deploy/Dockerfile.dockerignore").exists());
}

#[test]
fn compose_runs_the_proxy_in_front_of_dynamodb_local_with_prometheus() {
    let compose: Value = serde_yaml::from_str(&read("deploy/docker-compose.yml")).unwrap();
    let services = &compose["services"];
    assert!(
        services["dynamodb-local"]["image"]
            .as_str()
            .unwrap()
            .starts_with("amazon/dynamodb-local:")
    );
    let proxy = &services["dynamo-cache"];
    assert_eq!(proxy["build"]["dockerfile"], "deploy/Dockerfile");
    assert!(
        root()
            .join("deploy")
            .join(proxy["build"]["context"].as_str().unwrap())
            .join("Cargo.toml")
            .exists()
    );
    let env: Vec<(String, String)> = proxy["environment"]
        .as_mapping()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.as_str().unwrap().into(), v.as_str().unwrap().into()))
        .collect();
    let config = config_from_env(&env, &[]);
    let upstream: http::Uri = config.upstream.as_deref().unwrap().parse().unwrap();
    assert_eq!(upstream.host(), Some("dynamodb-local"));

    // Published ports land on the listeners the environment configured.
    let published: BTreeSet<u16> = proxy["ports"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|p| {
            p.as_str()
                .unwrap()
                .rsplit(':')
                .next()
                .unwrap()
                .parse()
                .unwrap()
        })
        .collect();
    let dax = config.dax_listen.expect("a local DAX");
    assert_eq!(
        published,
        BTreeSet::from([config.listen.port(), config.admin_listen.port(), dax.port()])
    );
    // Discovery names the published DAX port on the host's loopback.
    let advertised = config.dax_advertise.expect("an advertised DAX address");
    assert!(advertised.ip().is_loopback() && advertised.port() == dax.port());
    let grace = proxy["stop_grace_period"].as_str().unwrap();
    let grace = Duration::from_secs(grace.trim_end_matches('s').parse().unwrap());
    grace_covers_drain(grace, Duration::ZERO, &config, "compose");

    // Prometheus scrapes the admin port and loads the shipped rules.
    for volume in services["prometheus"]["volumes"].as_sequence().unwrap() {
        let local = volume.as_str().unwrap().split(':').next().unwrap();
        assert!(root().join("deploy").join(local).exists(), "{local}");
    }
    let prometheus: Value =
        serde_yaml::from_str(&read("deploy/prometheus/prometheus.yml")).unwrap();
    let target = prometheus["scrape_configs"][0]["static_configs"][0]["targets"][0]
        .as_str()
        .unwrap();
    assert_eq!(
        target,
        format!("dynamo-cache:{}", config.admin_listen.port())
    );
    assert_eq!(prometheus["scrape_configs"][0]["metrics_path"], "/metrics");
    assert_eq!(prometheus["rule_files"][0], "/etc/prometheus/alerts.yml");
}

#[test]
fn kubernetes_sidecar_probes_drains_and_points_the_app_at_the_proxy() {
    let docs = yaml_documents("deploy/kubernetes/sidecar.yaml");
    let account = kind(&docs, "ServiceAccount")[0];
    assert!(
        account["metadata"]["annotations"]["eks.amazonaws.com/role-arn"]
            .as_str()
            .unwrap()
            .starts_with("arn:aws:iam::")
    );
    let deployment = kind(&docs, "Deployment")[0];
    let pod = &deployment["spec"]["template"]["spec"];
    assert_eq!(pod["serviceAccountName"], account["metadata"]["name"]);

    // A native sidecar: starts before the app, stops after it.
    let proxy = container(&pod["initContainers"], "dynamo-cache");
    assert_eq!(proxy["restartPolicy"], "Always");
    let config = config_from_env(&k8s_env(proxy), &[]);
    assert!(
        config.listen.ip().is_loopback(),
        "a sidecar keeps data on loopback"
    );
    check_probes(proxy, &config);
    assert!(proxy["resources"]["limits"]["memory"].is_string());
    assert_eq!(proxy["securityContext"]["runAsNonRoot"], true);

    let grace = Duration::from_secs(pod["terminationGracePeriodSeconds"].as_u64().unwrap());
    grace_covers_drain(grace, pre_stop_sleep(proxy), &config, "sidecar");

    let app = container(&pod["containers"], "app");
    assert_app_points_at(&k8s_env(app), &config);
}

#[test]
fn kubernetes_shared_fleet_config_service_and_monitor_agree() {
    let docs = yaml_documents("deploy/kubernetes/shared-fleet.yaml");
    let config_map = kind(&docs, "ConfigMap")[0];
    let deployment = kind(&docs, "Deployment")[0];
    let pod = &deployment["spec"]["template"]["spec"];
    let proxy = container(&pod["containers"], "dynamo-cache");

    // The mounted ConfigMap is the file DYNAMO_CACHE_CONFIG names.
    let mount = proxy["volumeMounts"][0]["mountPath"].as_str().unwrap();
    let files: Vec<(String, String)> = config_map["data"]
        .as_mapping()
        .unwrap()
        .iter()
        .map(|(k, v)| {
            (
                format!("{mount}/{}", k.as_str().unwrap()),
                v.as_str().unwrap().to_string(),
            )
        })
        .collect();
    let files: Vec<(&str, &str)> = files
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    let env = k8s_env(proxy);
    let config_path = &env
        .iter()
        .find(|(n, _)| n == "DYNAMO_CACHE_CONFIG")
        .unwrap()
        .1;
    assert!(
        files.iter().any(|(p, _)| p == config_path),
        "{config_path} is not mounted"
    );
    let config = config_from_env(&env, &files);
    check_probes(proxy, &config);
    let grace = Duration::from_secs(pod["terminationGracePeriodSeconds"].as_u64().unwrap());
    grace_covers_drain(grace, pre_stop_sleep(proxy), &config, "shared fleet");
    // Reachable from other pods, so callers must sign with keys of their own, and the keys
    // and the admin token come from the mounted Secret.
    assert_eq!(config.auth.mode, dynamo_cache::config::AuthMode::Sigv4);
    let secret_mount = proxy["volumeMounts"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "credentials")
        .unwrap()["mountPath"]
        .as_str()
        .unwrap();
    let secret_volume = pod["volumes"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|v| v["name"] == "credentials")
        .unwrap();
    let secret_name = secret_volume["secret"]["secretName"].as_str().unwrap();
    // The Secret is defined in the same file, with a key for every file the config names.
    let secret = kind(&docs, "Secret")
        .into_iter()
        .find(|s| s["metadata"]["name"] == secret_name)
        .unwrap_or_else(|| panic!("no Secret {secret_name}"));
    for file in [&config.auth.credentials_file, &config.auth.admin_token_file] {
        let file = file.as_deref().unwrap();
        let key = file
            .strip_prefix(secret_mount)
            .unwrap_or_else(|_| panic!("{} is not in the Secret", file.display()));
        let key = key.to_str().unwrap();
        assert!(
            secret["stringData"][key].is_string(),
            "the Secret has no {key}"
        );
    }
    // Its principals file is one the proxy loads.
    let principals = secret["stringData"]["principals.toml"].as_str().unwrap();
    dynamo_cache::auth::Principals::parse(principals, Path::new("/")).unwrap();
    // The NetworkPolicy admits callers from the namespaces the header describes.
    let policy = kind(&docs, "NetworkPolicy")[0];
    let callers = &policy["spec"]["ingress"][0]["from"][0];
    assert!(
        callers["namespaceSelector"].is_mapping(),
        "callers only from the fleet's namespace"
    );
    assert!(callers["podSelector"].is_mapping());
    // Replicas of a fleet keep each other fresh through the tables' streams.
    assert!(
        config.streams.enabled,
        "the shared fleet should follow streams"
    );

    // The Service's ports reach the configured listeners, and the monitor scrapes /metrics on
    // the admin one.
    let service = kind(&docs, "Service")[0];
    let port_of = |name: &str| -> u16 {
        let p = service["spec"]["ports"]
            .as_sequence()
            .unwrap()
            .iter()
            .find(|p| p["name"] == name)
            .unwrap();
        let target = p["targetPort"].as_str().unwrap();
        probe_port(
            proxy,
            &serde_yaml::from_str(&format!("httpGet: {{port: {target}}}")).unwrap(),
        )
    };
    assert_eq!(port_of("data"), config.listen.port());
    assert_eq!(port_of("admin"), config.admin_listen.port());
    let monitor = kind(&docs, "ServiceMonitor")[0];
    assert_eq!(monitor["spec"]["endpoints"][0]["port"], "admin");
    assert_eq!(monitor["spec"]["endpoints"][0]["path"], "/metrics");
    assert_eq!(
        monitor["spec"]["selector"]["matchLabels"],
        service["metadata"]["labels"]
    );
}

#[test]
fn ecs_task_runs_the_proxy_as_a_healthy_sidecar_the_app_depends_on() {
    let task: serde_json::Value =
        serde_json::from_str(&read("deploy/ecs/task-definition.json")).unwrap();
    assert_eq!(
        task["networkMode"], "awsvpc",
        "containers share loopback in awsvpc"
    );
    let containers = task["containerDefinitions"].as_array().unwrap();
    let by_name = |name: &str| containers.iter().find(|c| c["name"] == name).unwrap();
    let env_of = |c: &serde_json::Value| -> Vec<(String, String)> {
        c["environment"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                (
                    e["name"].as_str().unwrap().into(),
                    e["value"].as_str().unwrap().into(),
                )
            })
            .collect()
    };
    let proxy = by_name("dynamo-cache");
    let config = config_from_env(&env_of(proxy), &[]);
    let health: Vec<String> =
        serde_json::from_value(proxy["healthCheck"]["command"].clone()).unwrap();
    assert_eq!(health[0], "CMD");
    assert_eq!(health[1], "/usr/local/bin/dynamo-cache");
    let parsed = Cli::try_parse_from(&health[1..]).unwrap();
    assert!(matches!(parsed.command, Some(Command::Healthcheck { .. })));
    assert_eq!(
        proxy["portMappings"][0]["containerPort"].as_u64(),
        Some(u64::from(config.admin_listen.port()))
    );
    let stop = Duration::from_secs(proxy["stopTimeout"].as_u64().unwrap());
    grace_covers_drain(stop, Duration::ZERO, &config, "ecs");

    let app = by_name("app");
    assert_app_points_at(&env_of(app), &config);
    assert_eq!(app["dependsOn"][0]["containerName"], "dynamo-cache");
    assert_eq!(app["dependsOn"][0]["condition"], "HEALTHY");
}

#[test]
fn systemd_unit_starts_the_binary_with_a_shipped_config_and_waits_for_the_drain() {
    let unit = read("deploy/systemd/dynamo-cache.service");
    let value = |key: &str| -> String {
        unit.lines()
            .find_map(|l| l.strip_prefix(&format!("{key}=")))
            .unwrap_or_else(|| panic!("no {key}="))
            .to_string()
    };
    let exec = value("ExecStart");
    let argv: Vec<&str> = exec.split_whitespace().collect();
    assert_eq!(argv[0], "/usr/local/bin/dynamo-cache");
    let cli = Cli::try_parse_from(&argv).unwrap();
    let Some(Command::Serve(args)) = cli.command else {
        panic!("serve expected")
    };
    // The unit's config path gets the VM example, as its header says to install: both
    // listeners on loopback.
    assert!(unit.contains("install -D -m 0644 config/examples/vm.toml /etc/dynamo-cache/"));
    let config = Config::load(&root().join("config/examples/vm.toml")).unwrap();
    assert!(config.admin_listen.ip().is_loopback() && config.listen.ip().is_loopback());
    assert_eq!(value("ExecReload"), "/bin/kill -HUP $MAINPID");
    let docs = value("Documentation");
    let doc_path = docs.strip_prefix("file:").expect("a file: URL");
    assert!(unit.contains(&format!("install -D -m 0644 README.md {doc_path}")));
    assert_eq!(
        args.config.as_deref(),
        Some(Path::new("/etc/dynamo-cache/dynamo-cache.toml"))
    );
    assert_eq!(value("KillSignal"), "SIGTERM");
    let stop = Duration::from_secs(value("TimeoutStopSec").parse().unwrap());
    grace_covers_drain(stop, Duration::ZERO, &config, "systemd");
    assert_eq!(value("DynamicUser"), "yes");
}

#[tokio::test]
async fn every_probe_path_in_deploy_answers_200_on_a_real_proxy() {
    let mut paths = BTreeSet::new();
    for file in [
        "deploy/kubernetes/sidecar.yaml",
        "deploy/kubernetes/shared-fleet.yaml",
    ] {
        for doc in yaml_documents(file) {
            let pod = &doc["spec"]["template"]["spec"];
            for list in ["initContainers", "containers"] {
                for c in pod[list].as_sequence().into_iter().flatten() {
                    for probe in ["startupProbe", "readinessProbe", "livenessProbe"] {
                        if let Some(path) = c[probe]["httpGet"]["path"].as_str() {
                            paths.insert(path.to_string());
                        }
                    }
                }
            }
        }
    }
    paths.insert("/metrics".into());
    assert!(paths.len() >= 3, "{paths:?}");

    let mut upstream = crate::common::Upstream::start().await;
    let mut proxy = crate::common::Proxy::start(&upstream.url).await;
    for path in &paths {
        let mut status = 0;
        for _ in 0..100 {
            status = crate::common::http_get(&format!("{}{path}", proxy.admin_url))
                .await
                .unwrap()
                .status;
            if status == 200 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(status, 200, "{path}");
    }
    proxy.stop().await;
    upstream.stop().await;
}

#[test]
fn every_variable_in_deploy_is_one_the_cli_reads_and_the_readme_documents() {
    let readme = read("README.md");
    let known: BTreeSet<String> = cli_env_vars().into_iter().map(|(e, _, _)| e).collect();
    for file in [
        "deploy/docker-compose.yml",
        "deploy/kubernetes/sidecar.yaml",
        "deploy/kubernetes/shared-fleet.yaml",
        "deploy/ecs/task-definition.json",
        "deploy/Dockerfile",
    ] {
        let text = read(file);
        let mut rest = text.as_str();
        while let Some(at) = rest.find("DYNAMO_CACHE_") {
            let name: String = rest[at..]
                .chars()
                .take_while(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == '_')
                .collect();
            rest = &rest[at + name.len()..];
            assert!(
                known.contains(&name),
                "{file}: {name} is not read by the CLI"
            );
            assert!(
                readme.contains(&name),
                "{file}: {name} is not in the README"
            );
        }
    }
}

/// The shipped compose and Kubernetes examples drop cached entries with the binary's own admin
/// client, at the path the image installs it, with a command the binary accepts.
#[test]
fn the_shipped_examples_flush_with_the_binarys_own_admin_client() {
    let dockerfile = read("deploy/Dockerfile");
    assert!(dockerfile.contains(r#"ENTRYPOINT ["/usr/local/bin/dynamo-cache"]"#));
    for file in [
        "deploy/docker-compose.yml",
        "deploy/kubernetes/sidecar.yaml",
        "deploy/kubernetes/shared-fleet.yaml",
    ] {
        let text = read(file);
        let line = text
            .lines()
            .find(|l| l.contains(" admin flush"))
            .unwrap_or_else(|| panic!("{file}: no admin flush command"));
        let start = line
            .find("/usr/local/bin/dynamo-cache")
            .unwrap_or_else(|| panic!("{file}: not the image's binary: {line}"));
        let argv: Vec<&str> = line[start..].split_whitespace().collect();
        let cli = Cli::try_parse_from(&argv).unwrap_or_else(|e| panic!("{file}: {e}"));
        match cli.command {
            Some(Command::Admin {
                action: dynamo_cache::cli::AdminAction::Flush { table: Some(_) },
                ..
            }) => {}
            other => panic!("{file}: {other:?}"),
        }
    }
    // The shared fleet's client finds the token through the config the container names.
    let fleet = read("deploy/kubernetes/shared-fleet.yaml");
    assert!(fleet.contains("DYNAMO_CACHE_CONFIG"));
    assert!(fleet.contains(r#"admin_token_file = "/etc/dynamo-cache/credentials/admin-token""#));
    assert!(fleet.contains("mountPath: /etc/dynamo-cache/credentials"));
}

#[test]
fn compose_fleet_runs_three_nodes_on_one_engine_each_advertising_its_published_dax_port() {
    let mut compose: Value =
        serde_yaml::from_str(&read("deploy/docker-compose.fleet.yml")).unwrap();
    compose.apply_merge().unwrap();
    let services = &compose["services"];
    assert!(
        services["valkey"]["image"]
            .as_str()
            .unwrap()
            .starts_with("valkey/valkey:")
    );
    let mut advertised = BTreeSet::new();
    for name in ["node1", "node2", "node3"] {
        let node = &services[name];
        let mut node = node.clone();
        node.apply_merge().unwrap();
        assert_eq!(node["build"]["dockerfile"], "deploy/Dockerfile");
        let env: Vec<(String, String)> = node["environment"]
            .as_mapping()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.as_str().unwrap().into(), v.as_str().unwrap().into()))
            .collect();
        let config = config_from_env(&env, &[]);
        assert_eq!(config.fleet.redis, ["redis://valkey:6379"], "{name}");
        assert_eq!(
            config.fleet.discovery,
            dynamo_cache::config::Discovery::Fleet
        );
        let advertise = config.dax_advertise.unwrap();
        // The advertised DAX port is the one the host publishes for this node's listener.
        let dax_port = config.dax_listen.unwrap().port();
        let published = node["ports"]
            .as_sequence()
            .unwrap()
            .iter()
            .map(|p| p.as_str().unwrap().to_string())
            .any(|p| p == format!("127.0.0.1:{}:{dax_port}", advertise.port()));
        assert!(published, "{name} publishes its advertised DAX port");
        advertised.insert(advertise);
    }
    assert_eq!(advertised.len(), 3, "each node advertises its own address");
}

#[test]
fn kubernetes_fleet_replicas_share_the_valkey_service_and_advertise_their_pod_ip() {
    let docs = yaml_documents("deploy/kubernetes/fleet.yaml");
    let config_map = kind(&docs, "ConfigMap")[0];
    let deployments = kind(&docs, "Deployment");
    let services = kind(&docs, "Service");
    let proxy_deployment = deployments
        .iter()
        .find(|d| d["metadata"]["name"] == "dynamo-cache-fleet")
        .unwrap();
    assert_eq!(proxy_deployment["spec"]["replicas"], 3);
    let pod = &proxy_deployment["spec"]["template"]["spec"];
    let proxy = container(&pod["containers"], "dynamo-cache");
    let toml = config_map["data"]["dynamo-cache.toml"].as_str().unwrap();
    let mount = proxy["volumeMounts"][0]["mountPath"].as_str().unwrap();
    let path = format!("{mount}/dynamo-cache.toml");
    // The pod IP, as Kubernetes substitutes it into the advertised address.
    let env: Vec<(String, String)> = k8s_env(proxy)
        .into_iter()
        .map(|(n, v)| (n, v.replace("$(POD_IP)", "10.1.2.3")))
        .collect();
    let config = config_from_env(&env, &[(&path, toml)]);
    assert_eq!(
        config.fleet.discovery,
        dynamo_cache::config::Discovery::Fleet
    );
    assert_eq!(config.dax_advertise, Some("10.1.2.3:8111".parse().unwrap()));
    check_probes(proxy, &config);
    // The engine the replicas share is the Valkey Service of this file.
    let engine: http::Uri = config.fleet.redis[0]
        .replace("redis://", "http://")
        .parse()
        .unwrap();
    let valkey = services
        .iter()
        .find(|s| Some(s["metadata"]["name"].as_str().unwrap()) == engine.host())
        .expect("the engine's Service is in the file");
    assert_eq!(
        valkey["spec"]["ports"][0]["port"].as_u64(),
        engine.port_u16().map(u64::from)
    );
}
