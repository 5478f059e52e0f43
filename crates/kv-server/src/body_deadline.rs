//! Cuts off a request body that arrives too slowly (`--client-timeout`), authenticated or
//! not: a client that trickles its body a byte at a time would otherwise hold a connection,
//! and whatever waits on the body, for as long as it likes. The body has the window to arrive,
//! plus a second per MiB received so far: past the window, at least 1 MiB/s, which large
//! imports on any real link keep and a trickle does not. (Headers have the same window:
//! actix's `client_request_timeout`.)

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use actix_web::body::MessageBody;
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::error::PayloadError;
use actix_web::http::header;
use actix_web::middleware::Next;
use actix_web::rt::time::{Instant, Sleep, sleep_until};
use actix_web::web::Bytes;
use actix_web::{Error, HttpMessage, web};
use futures_util::Stream;

/// `--client-timeout`, for the middleware.
#[derive(Debug, Clone, Copy)]
pub struct ClientTimeout(pub Duration);

/// How much more time each MiB received buys.
const PER_MIB: Duration = Duration::from_secs(1);

/// The middleware (`actix_web::middleware::from_fn`), with [`ClientTimeout`] in the app data.
pub async fn limit(
    mut req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, Error> {
    // A request without a body (most reads) has nothing to time: no timer for it.
    let has_body = req.headers().contains_key(header::TRANSFER_ENCODING)
        || req
            .headers()
            .get(header::CONTENT_LENGTH)
            .is_some_and(|length| length.as_bytes() != b"0");
    let window = req.app_data::<web::Data<ClientTimeout>>().map(|t| t.0);
    if let Some(window) = window.filter(|_| has_body) {
        let inner = req.take_payload();
        let started = Instant::now();
        let timed = TimedBody {
            inner,
            timer: Box::pin(sleep_until(started + window)),
            started,
            window,
            received: 0,
            done: false,
        };
        let boxed: Pin<Box<dyn Stream<Item = Result<Bytes, PayloadError>>>> = Box::pin(timed);
        req.set_payload(Payload::from(boxed));
    }
    next.call(req).await
}

struct TimedBody {
    inner: Payload,
    timer: Pin<Box<Sleep>>,
    started: Instant,
    window: Duration,
    received: u64,
    done: bool,
}

impl Stream for TimedBody {
    type Item = Result<Bytes, PayloadError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.done {
            return Poll::Ready(None);
        }
        match Pin::new(&mut self.inner).poll_next(cx) {
            Poll::Ready(Some(Ok(chunk))) => {
                self.received += chunk.len() as u64;
                let mib = u32::try_from(self.received >> 20).unwrap_or(u32::MAX);
                let until = self.started + self.window + PER_MIB.saturating_mul(mib);
                self.timer.as_mut().reset(until);
                Poll::Ready(Some(Ok(chunk)))
            }
            Poll::Ready(other) => {
                self.done = other.is_none();
                Poll::Ready(other)
            }
            Poll::Pending => match self.timer.as_mut().poll(cx) {
                Poll::Ready(()) => {
                    self.done = true;
                    Poll::Ready(Some(Err(PayloadError::Io(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "the request body arrived too slowly (--client-timeout)",
                    )))))
                }
                Poll::Pending => Poll::Pending,
            },
        }
    }
}
