//! The `kv-server` binary: reads the command line, then answers `--health-check`, runs a
//! subcommand (export, import, copy, …) or serves until stopped.

use clap::Parser;
use kv_server::config::Config;

#[actix_web::main]
async fn main() {
    let config = Config::parse();
    if config.health_check {
        match kv_server::health_check::check(&config.bind, config.tls_files().is_some()) {
            Ok(()) => std::process::exit(0),
            Err(why) => {
                eprintln!("kv-server: not ready: {why}");
                std::process::exit(1);
            }
        }
    }
    kv_core::logging::init(config.log_format);
    if let Some(command) = &config.command {
        if let Err(why) = kv_server::commands::run(&config.command_settings(), command) {
            eprintln!("kv-server: {why}");
            std::process::exit(1);
        }
        return;
    }
    let plain_stderr = config.log_format == kv_core::logging::LogFormat::Text;
    if let Err(err) = kv_server::run(config).await {
        log::error!("kv-server cannot start: {err}");
        if plain_stderr {
            eprintln!("kv-server: {err}");
        }
        std::process::exit(1);
    }
}
