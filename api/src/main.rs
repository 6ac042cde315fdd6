use ciba_api::cli::{Cli, Command};
use ciba_runtime::config::Config;
use ciba_runtime::logging::init_tracing;
use std::process::ExitCode;

/// mimalloc: the request path allocates small, short-lived buffers on many threads, where
/// glibc's malloc showed up as a fifth of the API's CPU in the polling benchmark.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    ciba_runtime::crypto::provider::install();
    let cli = Cli::parse_args();
    let config = match Config::from_env() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => {
            init_tracing(config.log_format);
            // Database calls run on blocking threads: more of them than connections only adds
            // threads (each with a stack and a malloc arena) that wake up to wait for the pool.
            let blocking = config.db_max_connections as usize + 4;
            let runtime = match tokio::runtime::Builder::new_multi_thread()
                .max_blocking_threads(blocking)
                .enable_all()
                .build()
            {
                Ok(r) => r,
                Err(e) => {
                    eprintln!("error: cannot start the runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            match runtime.block_on(ciba_api::server::run(config)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!(error = %e, "server failed");
                    eprintln!("error: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Migrate => {
            init_tracing(config.log_format);
            let url = &config.database_url;
            if let Err(f) = ciba_store::connect::probe(url) {
                eprintln!(
                    "error: migration failed: {}",
                    ciba_runtime::database::unusable(&f)
                );
                return ExitCode::FAILURE;
            }
            let result = ciba_store::Store::open(url, 1).and_then(|s| s.migrate());
            match result {
                Ok(applied) => {
                    println!("{}", serde_json::json!({"applied": applied}));
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("error: migration failed: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Sandbox(cmd) => match ciba_api::sandbox::script::run(config, cmd) {
            Ok(value) => {
                println!("{value}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        },
        Command::Admin(args) => match ciba_api::admin::run(&config, args.command) {
            Ok(serde_json::Value::String(lines)) => {
                // `audit export`: JSON lines as they are.
                if !lines.is_empty() {
                    println!("{lines}");
                }
                ExitCode::SUCCESS
            }
            Ok(value) => {
                if args.json {
                    println!("{value}");
                } else {
                    println!("{}", ciba_api::admin::render_text(&value));
                }
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        },
    }
}
