use clap::Parser;
use kv_server::config::Config;

#[actix_web::main]
async fn main() {
    let config = Config::parse();
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    if let Err(err) = kv_server::run(config).await {
        log::error!("kv-server cannot start: {err}");
        eprintln!("kv-server: {err}");
        std::process::exit(1);
    }
}
