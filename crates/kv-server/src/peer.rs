//! Whether a request's client is still connected. actix-web does not drop a handler when its
//! client disconnects (actix/actix-web#1313, #3462), so work a gone client asked for would run
//! to its end: each connection keeps a duplicate of its socket (taken in `on_connect`), which
//! long work peeks at, without reading, between its steps (see `kv_core::deadline`). A peek
//! that finds the stream ended (FIN) or reset means the client is gone; one that finds data
//! (a pipelined request) or none yet means it is there.

use std::any::Any;
use std::io::ErrorKind;
use std::net::TcpStream;
use std::os::fd::AsFd;
use std::sync::Arc;

use actix_tls::accept::rustls_0_23::TlsStream;
use actix_web::HttpRequest;
use actix_web::dev::Extensions;
use actix_web::rt::net::TcpStream as TokioTcpStream;
use kv_core::deadline::ClientProbe;

/// A duplicate of a connection's socket (the same open socket: non-blocking, as the server's).
#[derive(Debug)]
struct PeerSocket(TcpStream);

impl PeerSocket {
    fn gone(&self) -> bool {
        let mut byte = [0u8; 1];
        match self.0.peek(&mut byte) {
            Ok(0) => true,
            Ok(_) => false,
            Err(err) => !matches!(err.kind(), ErrorKind::WouldBlock | ErrorKind::Interrupted),
        }
    }
}

/// `HttpServer::on_connect`: keeps a duplicate of a new connection's socket.
pub fn on_connect(connection: &dyn Any, data: &mut Extensions) {
    let tcp = connection.downcast_ref::<TokioTcpStream>().or_else(|| {
        connection
            .downcast_ref::<TlsStream<TokioTcpStream>>()
            .map(|tls| tls.get_ref().0)
    });
    let duplicate = tcp.and_then(|tcp| tcp.as_fd().try_clone_to_owned().ok());
    if let Some(fd) = duplicate {
        data.insert(Arc::new(PeerSocket(TcpStream::from(fd))));
    }
}

/// What says whether the client of `req` has gone (`None`: it cannot be told).
pub fn probe(req: &HttpRequest) -> Option<ClientProbe> {
    let socket = Arc::clone(req.conn_data::<Arc<PeerSocket>>()?);
    Some(Arc::new(move || socket.gone()))
}
