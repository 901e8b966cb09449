//! The refusals hyper makes by itself. A request hyper cannot parse never reaches the router:
//! hyper answers it with an empty body (400 for malformed requests, 414 for a request target
//! over 64 KiB, 431 for more than 100 header fields or an oversized head) and closes the
//! connection. This listener wraps each accepted connection so that those answers, and only
//! those, get the JSON error shape every other refusal has.
//!
//! They are recognised by being what the application never sends: a 400, 414 or 431 with
//! `content-length: 0` (every refusal the router makes has a JSON body). hyper is told the
//! connection cannot write vectored, so it writes each response head in one buffer.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::serve::Listener;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};

/// A TCP listener whose connections give hyper's own refusals a JSON body.
pub struct JsonRefusals(pub TcpListener);

impl Listener for JsonRefusals {
    type Io = Conn;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (Conn, Self::Addr) {
        let (io, addr) = Listener::accept(&mut self.0).await;
        (
            Conn {
                io,
                pending: Vec::new(),
            },
            addr,
        )
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        Listener::local_addr(&self.0)
    }
}

/// One connection; `pending` holds a rewritten answer not yet written out.
pub struct Conn {
    io: TcpStream,
    pending: Vec<u8>,
}

/// The JSON answer for a head hyper wrote by itself, if `head` is one.
fn rewrite(buf: &[u8]) -> Option<Vec<u8>> {
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let head = std::str::from_utf8(&buf[..end]).ok()?;
    let mut lines = head.split("\r\n");
    let status = lines.next()?.strip_prefix("HTTP/1.1 ")?;
    let (code, message, reason) = match status.get(..3)? {
        "400" => (
            "MALFORMED_REQUEST",
            "the request is not valid HTTP/1.1",
            "Bad Request",
        ),
        "414" => (
            "URI_TOO_LONG",
            "the request target is longer than 65534 bytes",
            "URI Too Long",
        ),
        "431" => (
            "HEADERS_TOO_LARGE",
            "the request has more than 100 header fields, or its head is too large",
            "Request Header Fields Too Large",
        ),
        _ => return None,
    };
    let mut empty = false;
    let mut date = None;
    for line in lines {
        let lower = line.to_ascii_lowercase();
        if lower == "content-length: 0" {
            empty = true;
        }
        if lower.starts_with("date:") {
            date = Some(line);
        }
    }
    if !empty || end != buf.len() {
        return None;
    }
    let body = serde_json::json!({"error": reason, "message": message, "code": code}).to_string();
    let mut out = format!(
        "HTTP/1.1 {} {reason}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n",
        &status[..3],
        body.len()
    );
    if let Some(d) = date {
        out.push_str(d);
        out.push_str("\r\n");
    }
    out.push_str("\r\n");
    out.push_str(&body);
    Some(out.into_bytes())
}

impl Conn {
    /// Write out what is pending; `Ready(Ok)` once nothing is.
    fn drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while !self.pending.is_empty() {
            let n = std::task::ready!(Pin::new(&mut self.io).poll_write(cx, &self.pending))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.pending.drain(..n);
        }
        Poll::Ready(Ok(()))
    }
}

impl AsyncRead for Conn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        std::task::ready!(self.drain(cx))?;
        if let Some(answer) = rewrite(buf) {
            // Taken whole; written out by this and later calls.
            self.pending = answer;
            let _ = self.drain(cx)?;
            return Poll::Ready(Ok(buf.len()));
        }
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        std::task::ready!(self.drain(cx))?;
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        std::task::ready!(self.drain(cx))?;
        Pin::new(&mut self.io).poll_shutdown(cx)
    }

    fn is_write_vectored(&self) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::rewrite;

    #[test]
    fn only_hypers_empty_refusals_are_rewritten() {
        let hyper = b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\ndate: Tue, 01 Dec 2026 16:00:00 GMT\r\n\r\n";
        let out = String::from_utf8(rewrite(hyper).expect("rewritten")).expect("utf8");
        assert!(out.starts_with("HTTP/1.1 431 Request Header Fields Too Large\r\n"));
        assert!(out.contains("content-type: application/json\r\n"));
        assert!(out.contains("date: Tue, 01 Dec 2026 16:00:00 GMT\r\n"));
        let body = out.split("\r\n\r\n").nth(1).expect("body");
        let v: serde_json::Value = serde_json::from_str(body).expect("json");
        assert_eq!(v["code"], "HEADERS_TOO_LARGE");
        assert!(out.contains(&format!("content-length: {}\r\n", body.len())));
        // The application's own answers have bodies, and other statuses are left alone.
        assert!(rewrite(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 52\r\n\r\n").is_none());
        assert!(rewrite(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n").is_none());
        assert!(rewrite(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n").is_none());
        assert!(rewrite(b"{\"data\": []}").is_none());
    }
}
