//! What each command does: `serve` binds its listeners, resolves the AWS region and
//! credentials and hands over to [`crate::run`]; `check-config`, `healthcheck`, `admin` and
//! `bench` run to completion. Synchronous, so the whole of it is compiled here once, not again
//! in every binary that drives it.

use anyhow::{Context, bail};
use aws_credential_types::Credentials;
use aws_credential_types::provider::SharedCredentialsProvider;
use tokio::net::TcpListener;

use super::{AdminAction, AdminTargetArgs, Cli, Command, LogFormat, ServeArgs};
use crate::{Config, State};

/// Runs the command `cli` names, to completion.
pub fn main(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Some(Command::CheckConfig { file, mut serve }) => {
            if file.is_some() {
                serve.config = file;
            }
            let config = serve.config()?;
            let source = serve.config.as_ref().map_or_else(
                || "the defaults".to_string(),
                |path| path.display().to_string(),
            );
            // The files it names must load too, as `serve` would load them.
            if let Some(credentials) = &config.auth.credentials_file {
                let principals =
                    crate::auth::Principals::load(credentials).map_err(anyhow::Error::msg)?;
                eprintln!("{}: {} principals", credentials.display(), principals.len());
            }
            if let (Some(cert), Some(key)) = (&config.tls.cert_file, &config.tls.key_file) {
                crate::Certs::load(cert, key).map_err(anyhow::Error::msg)?;
            }
            let effective = toml::to_string_pretty(&config)?;
            println!("{}", effective.trim_end());
            eprintln!("{source}, with the environment and flags: ok");
            Ok(())
        }
        Some(Command::Healthcheck { target, ready }) => {
            let path = if ready { "/readyz" } else { "/healthz" };
            admin_call(&target, http::Method::GET, path, false)
        }
        Some(Command::Admin { target, action }) => match action {
            AdminAction::Flush { table } => admin_call(
                &target,
                http::Method::POST,
                &crate::cli::admin::flush_path(table.as_deref()),
                true,
            ),
            AdminAction::Stats => admin_call(&target, http::Method::GET, "/cache", true),
        },
        #[cfg(feature = "bench")]
        Some(Command::Bench(args)) => bench(args),
        Some(Command::Serve(args)) => serve(args),
        None => serve(cli.serve),
    }
}

fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let config = args.config()?;
    init_logging(args.log_format, &config.log_level);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    runtime.block_on(serve_async(args, config))
}

async fn serve_async(args: ServeArgs, config: Config) -> anyhow::Result<()> {
    let signals = Signals::install()?;
    #[cfg_attr(not(feature = "embedded"), allow(unused_mut))]
    let mut config = config;

    #[cfg(feature = "embedded")]
    let embedded = if args.embedded {
        let latency = std::time::Duration::from_millis(args.embedded_latency_ms.unwrap_or(0));
        let embedded =
            crate::embedded::Embedded::start_with_latency(args.embedded_db.as_deref(), latency)
                .await
                .map_err(anyhow::Error::msg)?;
        config.upstream = Some(embedded.url.clone());
        Some(embedded)
    } else {
        None
    };
    #[cfg(not(feature = "embedded"))]
    if args.embedded {
        bail!("this build has no embedded DynamoDB (built without the `embedded` feature)");
    }

    let (region, credentials) = if args.embedded {
        // The emulator checks that requests are signed, not by whom.
        let region = config
            .region
            .clone()
            .unwrap_or_else(|| crate::config::FALLBACK_REGION.into());
        let creds = Credentials::new("embedded", "embedded", None, None, "embedded");
        (region, SharedCredentialsProvider::new(creds))
    } else {
        aws_identity(&config).await
    };

    let data = bind(config.listen, "data").await?;
    let admin = bind(config.admin_listen, "admin").await?;
    let dax = match config.dax_listen {
        Some(addr) => Some(bind(addr, "dax").await?),
        None => None,
    };
    let dax_addr = dax.as_ref().map(TcpListener::local_addr).transpose()?;
    let listen = data.local_addr()?;
    let admin_addr = admin.local_addr()?;
    let state = State::new(config, &region, credentials)?;
    if state.config.auth.allow_unauthenticated && !listen.ip().is_loopback() {
        tracing::warn!(
            listen = %listen,
            "UNAUTHENTICATED: auth.allow_unauthenticated is set, so anyone who reaches {listen} acts \
             with this proxy's AWS identity and reads its cache; only the network decides who may"
        );
    }
    if let Some(verifier) = &state.gate.verifier {
        tracing::info!(
            principals = verifier.principals(),
            "verifying SigV4 signatures"
        );
    }
    reload_on_hangup(state.clone())?;
    tracing::info!(
        listen = %listen,
        admin = %admin_addr,
        dax = ?dax_addr,
        upstream = state.upstream.url(),
        region = %region,
        workers = state.config.worker_threads(),
        max_connections = state.config.limits.max_connections,
        item_cache_bytes = state.config.cache.item_max_bytes,
        item_ttl_ms = state.config.cache.item_ttl_ms,
        query_cache_bytes = state.config.cache.query_max_bytes,
        query_ttl_ms = state.config.cache.query_ttl_ms,
        "dynamo-cache started"
    );
    // One line on stdout with the real addresses (port 0 resolved), for people and harnesses.
    // Written without println!: a reader that closes the pipe (`| head -1`) must not stop the
    // proxy.
    let scheme = |tls: bool| if tls { "https" } else { "http" };
    let mut banner = format!(
        "dynamo-cache listening on {}://{listen} (admin {}://{admin_addr}), upstream {}\n",
        scheme(state.tls.is_some()),
        scheme(state.config.tls.admin),
        state.upstream.url()
    );
    if let Some(dax_addr) = dax_addr {
        let scheme = if state.tls.is_some() { "daxs" } else { "dax" };
        banner.push_str(&format!("  DAX clients: endpoint {scheme}://{dax_addr}\n"));
    }
    if args.embedded {
        let away = match args.embedded_latency_ms {
            Some(ms @ 1..) => format!(", {ms} ms away"),
            _ => String::new(),
        };
        banner.push_str(&format!(
            "  the upstream is an embedded local DynamoDB{away}; try it:\n    \
             AWS_ACCESS_KEY_ID=local AWS_SECRET_ACCESS_KEY=local aws dynamodb list-tables \
             --endpoint-url http://{listen} --region {region}\n  \
             or point any AWS SDK's endpoint_url at http://{listen}; Ctrl-C stops it.\n"
        ));
    }
    {
        use std::io::Write;
        let mut stdout = std::io::stdout().lock();
        let _ = stdout.write_all(banner.as_bytes());
        let _ = stdout.flush();
    }

    crate::run(state, data, admin, dax, signals.shutdown()).await;

    #[cfg(feature = "embedded")]
    if let Some(embedded) = embedded {
        embedded.stop().await;
    }
    Ok(())
}

/// `dynamo-cache bench`: run, print the tables, write the JSON and the plot. Ctrl-C stops the
/// run and still prints what it measured; a second Ctrl-C exits at once.
#[cfg(feature = "bench")]
fn bench(args: crate::bench::args::BenchArgs) -> anyhow::Result<()> {
    use crate::bench;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    let stop = tokio_util::sync::CancellationToken::new();
    let on_signal = stop.clone();
    runtime.spawn(async move {
        let _ = tokio::signal::ctrl_c().await;
        eprintln!("\nstopping: Ctrl-C again to exit at once");
        on_signal.cancel();
        let _ = tokio::signal::ctrl_c().await;
        std::process::exit(130);
    });
    if args.staleness {
        let options = args.staleness_options()?;
        let report = runtime.block_on(bench::staleness::run(&options, stop))?;
        print!("{}", report.render());
        return write_json(args.json.as_deref(), &report);
    }
    let options = args.options()?;
    let report = runtime.block_on(bench::run(&options, stop))?;
    print!("{}", report.render());
    write_json(args.json.as_deref(), &report)?;
    if let Some(path) = &args.plot {
        bench::plot::write(&report, path)?;
        println!("latency plot written to {}", path.display());
    }
    Ok(())
}

/// `--json FILE`: the figures, pretty-printed.
#[cfg(feature = "bench")]
fn write_json(
    path: Option<&std::path::Path>,
    report: &impl serde::Serialize,
) -> anyhow::Result<()> {
    if let Some(path) = path {
        let json = serde_json::to_string_pretty(report)?;
        std::fs::write(path, json + "\n").with_context(|| format!("writing {}", path.display()))?;
        println!("figures written to {}", path.display());
    }
    Ok(())
}

/// One request to a running proxy's admin listener (`healthcheck`: `GET /healthz` or
/// `/readyz`; `admin`: cache statistics, hot keys, flush); prints `URL: STATUS` (and with
/// `print_body`, the answer), and fails on anything but a 2xx.
fn admin_call(
    target: &AdminTargetArgs,
    method: http::Method,
    path: &str,
    print_body: bool,
) -> anyhow::Result<()> {
    let admin = crate::cli::admin::AdminTarget::resolve(
        target.config.as_deref(),
        target.admin,
        target.https,
        target.admin_token_file.as_deref(),
    )
    .map_err(anyhow::Error::msg)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let url = format!("{}{path}", admin.base);
    match runtime.block_on(admin.call(method, path)) {
        Ok((status, body)) if status.is_success() => {
            if print_body {
                println!("{}", String::from_utf8_lossy(&body).trim_end());
                eprintln!("{url}: {status}");
            } else {
                println!("{url}: {status}");
            }
            Ok(())
        }
        Ok((status, body)) => bail!(
            "{url}: {status}: {}",
            String::from_utf8_lossy(&body).trim_end()
        ),
        Err(err) => bail!("{url}: {err}"),
    }
}

/// Region and credentials from the standard AWS chains (env, profile, web identity, ECS, IMDS).
async fn aws_identity(config: &Config) -> (String, SharedCredentialsProvider) {
    let load = |region: Option<String>| {
        let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .http_client(crate::upstream::sdk_http_client());
        if let Some(region) = region {
            loader = loader.region(aws_config::Region::new(region));
        }
        loader.load()
    };
    let mut sdk = load(config.region.clone()).await;
    if sdk.region().is_none() {
        sdk = load(Some(crate::config::FALLBACK_REGION.into())).await;
    }
    let region = sdk
        .region()
        .map_or(crate::config::FALLBACK_REGION.into(), |r| r.to_string());
    let credentials = sdk
        .credentials_provider()
        .expect("aws_config's defaults always include the credentials chain");
    (region, credentials)
}

async fn bind(addr: std::net::SocketAddr, which: &str) -> anyhow::Result<TcpListener> {
    match TcpListener::bind(addr).await {
        Ok(listener) => Ok(listener),
        Err(err) if err.kind() == std::io::ErrorKind::AddrInUse => {
            bail!("cannot listen on {addr} ({which}): the address is already in use")
        }
        Err(err) => Err(err).with_context(|| format!("cannot listen on {addr} ({which})")),
    }
}

/// SIGHUP re-reads the credentials file, the admin token and the TLS certificate; connections
/// stay up, and a file that fails to load leaves the old value in force.
fn reload_on_hangup(state: State) -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hangups = signal(SignalKind::hangup()).context("installing the SIGHUP handler")?;
    tokio::spawn(async move {
        while hangups.recv().await.is_some() {
            match state.reload() {
                Ok(()) => tracing::info!("reloaded credentials, admin token and certificates"),
                Err(err) => tracing::error!(error = %err, "reload failed; keeping what was loaded"),
            }
        }
    });
    Ok(())
}

/// SIGTERM and SIGINT, registered when created: a signal that arrives before the proxy is
/// serving is still seen as a request to stop, not the default "die now".
struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl Signals {
    fn install() -> anyhow::Result<Signals> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Signals {
            term: signal(SignalKind::terminate()).context("installing the SIGTERM handler")?,
            int: signal(SignalKind::interrupt()).context("installing the SIGINT handler")?,
        })
    }

    async fn next(&mut self) {
        tokio::select! {
            _ = self.term.recv() => {}
            _ = self.int.recv() => {}
        }
    }

    /// Resolves on the first SIGTERM or Ctrl-C; a second one exits at once.
    async fn shutdown(mut self) {
        self.next().await;
        tokio::spawn(async move {
            self.next().await;
            tracing::warn!("second signal: exiting without draining");
            std::process::exit(130);
        });
    }
}

/// Logs to stderr at `level`, unless `RUST_LOG` says otherwise. Colour only on a terminal,
/// and never with `NO_COLOR` set (<https://no-color.org>): a file or a pipe gets plain text.
fn init_logging(format: LogFormat, level: &str) {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal() && !no_color)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}
