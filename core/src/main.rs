//! The `pgdog` binary: command line, logging, and the runtime.

use pgdog::config::Config;
use pgdog::plugins::PluginHost;
use std::path::PathBuf;
use std::process::ExitCode;

const USAGE: &str = "\
pgdog: PostgreSQL proxy with query mirroring and migration readiness

Usage: pgdog [--config PATH] [--check]
       pgdog readiness --prometheus URL [--database NAME] [--config PATH]

Options:
  -c, --config PATH   configuration file (default: pgdog.toml)
      --check         validate the configuration, print every problem, and exit
  -h, --help          print this help
  -V, --version       print the version

pgdog readiness: judge a fleet of proxies from Prometheus' sums (the readiness
criteria and plugins of --config), print the report; exit 0 when READY, 1 when
not, 2 when it cannot judge.

Logging: to stderr, one line per event ([general] log_format = \"text\" or \"json\");
set RUST_LOG (e.g. RUST_LOG=debug); default info.

Signals: SIGHUP reloads the configuration (as RELOAD); SIGTERM drains (running
transactions may finish, up to shutdown_timeout_ms); SIGINT closes every connection
at once, cleanly.";

struct Args {
    config: PathBuf,
    check: bool,
}

fn parse_args() -> Result<Option<Args>, String> {
    let mut args = Args {
        config: PathBuf::from("pgdog.toml"),
        check: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "-h" | "--help" => {
                println!("{USAGE}");
                return Ok(None);
            }
            "-V" | "--version" => {
                println!("pgdog {}", env!("CARGO_PKG_VERSION"));
                return Ok(None);
            }
            "--check" => args.check = true,
            "-c" | "--config" => {
                args.config = it.next().ok_or("--config needs a path")?.into();
            }
            other => match other.strip_prefix("--config=") {
                Some(path) => args.config = path.into(),
                None => return Err(format!("unknown argument: {other}")),
            },
        }
    }
    Ok(Some(args))
}

/// `pgdog readiness ...`: exit 0 READY, 1 NOT READY, 2 on any error.
fn fleet_readiness(words: Vec<String>) -> ExitCode {
    let args = match pgdog::fleet::parse_args(words) {
        Ok(args) => args,
        Err(e) => {
            eprintln!("pgdog: {e}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    {
        use tracing_subscriber::layer::SubscriberExt;
        use tracing_subscriber::util::SubscriberInitExt;
        let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
        tracing_subscriber::registry()
            .with(pgdog::logging::filter_from_env("warn"))
            .with(fmt)
            .init();
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    match runtime.block_on(pgdog::fleet::judge(&args)) {
        Ok(report) => {
            for row in &report.rows {
                println!("{row}");
            }
            ExitCode::from(if report.ready() { 0 } else { 1 })
        }
        Err(e) => {
            eprintln!("pgdog readiness: {e}");
            ExitCode::from(2)
        }
    }
}

fn main() -> ExitCode {
    let mut words = std::env::args().skip(1);
    if words.next().as_deref() == Some("readiness") {
        return fleet_readiness(words.collect());
    }
    let args = match parse_args() {
        Ok(Some(args)) => args,
        Ok(None) => return ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("pgdog: {e}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let config = match Config::load(&args.config) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("pgdog: {e}");
            return ExitCode::FAILURE;
        }
    };
    pgdog::logging::init(config.general.log_format);
    // Plugins load before anything listens: a broken plugin stops start-up with its reason.
    let plugins = match PluginHost::load_from_config(&config, &Config::dir_of(&args.config)) {
        Ok(plugins) => plugins,
        Err(e) => {
            eprintln!("pgdog: {e}");
            return ExitCode::FAILURE;
        }
    };
    if args.check {
        println!(
            "{}: OK ({} pools)",
            args.config.display(),
            config.pools.len()
        );
        return ExitCode::SUCCESS;
    }
    let mut runtime = match config.general.workers {
        // One worker: the proxy runs on this thread, no work is handed between threads.
        1 => tokio::runtime::Builder::new_current_thread(),
        0 => tokio::runtime::Builder::new_multi_thread(),
        n => {
            let mut builder = tokio::runtime::Builder::new_multi_thread();
            builder.worker_threads(n);
            builder
        }
    };
    let runtime = runtime
        .enable_all()
        .thread_name("pgdog")
        .build()
        .expect("tokio runtime");
    match runtime.block_on(pgdog::app::run(config, args.config, plugins)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("pgdog: {e}");
            ExitCode::FAILURE
        }
    }
}
