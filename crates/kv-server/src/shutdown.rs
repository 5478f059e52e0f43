//! Stopping: SIGTERM and Ctrl+C (SIGINT) both stop the server gracefully — it stops
//! accepting connections, lets in-flight requests finish (for at most the shutdown timeout)
//! and exits 0. actix alone would treat SIGINT as a forced stop that drops them.

use std::future::Future;
use std::io;

/// Completes when the process is asked to stop. The handlers are installed at once (not on
/// first poll), so a signal sent right after start-up is not missed.
#[cfg(unix)]
pub fn signal() -> io::Result<impl Future<Output = ()> + Send + 'static> {
    use std::task::Poll;

    use actix_web::rt::signal::unix::{SignalKind, signal};

    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;
    Ok(async move {
        let name = std::future::poll_fn(|cx| {
            if interrupt.poll_recv(cx).is_ready() {
                return Poll::Ready("SIGINT");
            }
            if terminate.poll_recv(cx).is_ready() {
                return Poll::Ready("SIGTERM");
            }
            Poll::Pending
        })
        .await;
        log::info!("{name} received: finishing in-flight requests, then exiting");
    })
}

/// Completes on Ctrl+C (Windows has no SIGTERM; a service manager sends Ctrl+C or kills).
#[cfg(not(unix))]
pub fn signal() -> io::Result<impl Future<Output = ()> + Send + 'static> {
    Ok(async {
        match actix_web::rt::signal::ctrl_c().await {
            Ok(()) => log::info!("Ctrl+C received: finishing in-flight requests, then exiting"),
            Err(err) => {
                log::warn!("cannot listen for Ctrl+C: {err}");
                std::future::pending::<()>().await;
            }
        }
    })
}
