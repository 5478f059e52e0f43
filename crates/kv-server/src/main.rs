use clap::Parser;
use kv_server::config::Config;

/// mimalloc instead of glibc's allocator: SQLite's page caches allocate and free pages all the
/// time, and glibc handed freed memory of the writer thread's arena back to the kernel
/// (`madvise`, a TLB flush on every core) over and over; see docs/BENCHMARKS.md.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[actix_web::main]
async fn main() {
    let config = Config::parse();
    kv_core::logging::init(config.log_format);
    let plain_stderr = config.log_format == kv_core::logging::LogFormat::Text;
    if let Err(err) = kv_server::run(config).await {
        log::error!("kv-server cannot start: {err}");
        if plain_stderr {
            eprintln!("kv-server: {err}");
        }
        std::process::exit(1);
    }
}
