//! Answers: JSON documents, JSON-lines streams (docker's progress format), byte streams
//! (archives), and errors as `{"message": ...}`; and request bodies read with a bound.

use std::convert::Infallible;

use bytes::Bytes;
use futures_util::StreamExt;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::StatusCode;
use serde::Serialize;
use tokio::sync::mpsc;

use crate::error::ApiError;

/// Every answer's body: a whole buffer or a stream.
pub(crate) type Body = http_body_util::combinators::BoxBody<Bytes, std::io::Error>;
/// Every answer.
pub(crate) type Response = hyper::Response<Body>;

/// JSON request bodies (container configs, auth) larger than this are refused; docker's own
/// limit for such bodies is far above anything a client sends, but an endless body must end.
pub(crate) const MAX_JSON_BODY: usize = 4 << 20;

fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into()).map_err(|never: Infallible| match never {}).boxed()
}

fn with_type(status: StatusCode, body: Body, content_type: &'static str) -> Response {
    let mut resp = hyper::Response::new(body);
    *resp.status_mut() = status;
    resp.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    resp
}

/// `value` as a JSON document.
pub(crate) fn json<T: Serialize + ?Sized>(status: StatusCode, value: &T) -> Response {
    match serde_json::to_vec(value) {
        Ok(bytes) => with_type(status, full(bytes), "application/json"),
        Err(e) => error(ApiError::internal(format!("encoding the answer: {e}"))),
    }
}

/// No body (204, or 200/201 where docker sends nothing).
pub(crate) fn empty(status: StatusCode) -> Response {
    let mut resp = hyper::Response::new(full(Bytes::new()));
    *resp.status_mut() = status;
    resp
}

/// Plain text (`/_ping`'s `OK`).
pub(crate) fn text(status: StatusCode, body: &'static str) -> Response {
    with_type(status, full(body), "text/plain; charset=utf-8")
}

/// docker's error document.
pub(crate) fn error(err: ApiError) -> Response {
    let body = serde_json::json!({ "message": err.message });
    with_type(err.status, full(body.to_string()), "application/json")
}

/// The sending end of a JSON-lines answer (docker's progress stream). Unbounded, so that
/// synchronous progress callbacks (called inside the registry client's tasks and the
/// builder's threads) never block; the messages are small and come at the pace of the work.
#[derive(Clone)]
pub(crate) struct Lines(mpsc::UnboundedSender<Bytes>);

impl Lines {
    /// Sends one message; a client that went away is not an error for the work itself.
    pub(crate) fn send(&self, value: &serde_json::Value) {
        let mut line = value.to_string().into_bytes();
        line.push(b'\n');
        let _ = self.0.send(Bytes::from(line));
    }

    /// A `{"stream": text}` message (build output).
    pub(crate) fn stream(&self, text: impl Into<String>) {
        self.send(&serde_json::json!({ "stream": text.into() }));
    }

    /// A `{"status": ...}` message.
    pub(crate) fn status(&self, status: impl Into<String>) {
        self.send(&serde_json::json!({ "status": status.into() }));
    }

    /// The error that ends a stream: the status is already 200, so docker reports failures
    /// inside the stream, and its client prints `message` and exits 1.
    pub(crate) fn error(&self, message: impl std::fmt::Display) {
        let message = message.to_string();
        self.send(&serde_json::json!({ "errorDetail": { "message": message }, "error": message }));
    }
}

/// A 200 JSON-lines answer and the sender that feeds it; the body ends when every sender is
/// dropped.
pub(crate) fn lines() -> (Lines, Response) {
    let (tx, rx) = mpsc::unbounded_channel::<Bytes>();
    let stream = futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|b| (Ok(Frame::data(b)), rx)) });
    (Lines(tx), with_type(StatusCode::OK, BodyExt::boxed(StreamBody::new(stream)), "application/json"))
}

/// The writing end of a byte stream answer (an archive), for a blocking task: it waits while
/// the client reads, so an archive is never held in memory.
pub(crate) struct ByteWriter(mpsc::Sender<std::io::Result<Bytes>>);

impl ByteWriter {
    /// Ends the body with an error: the client sees a cut-off transfer, never a short archive
    /// that looks whole.
    pub(crate) fn fail(self, message: String) {
        let _ = self.0.blocking_send(Err(std::io::Error::other(message)));
    }
}

impl ByteWriter {
    /// Tells whether the client stopped reading (the connection is gone), apart from the
    /// writer, which a writing callback borrows meanwhile. It holds the stream open: drop it
    /// before the writer.
    pub(crate) fn closed_check(&self) -> impl Fn() -> bool + use<> {
        let tx = self.0.clone();
        move || tx.is_closed()
    }
}

impl std::io::Write for ByteWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .blocking_send(Ok(Bytes::copy_from_slice(buf)))
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "the client went away"))?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A 200 answer of `content_type` fed by a [`ByteWriter`].
pub(crate) fn bytes_stream(content_type: &'static str) -> (ByteWriter, Response) {
    let (tx, rx) = mpsc::channel::<std::io::Result<Bytes>>(16);
    let stream = futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|r| (r.map(Frame::data), rx)) });
    (ByteWriter(tx), with_type(StatusCode::OK, BodyExt::boxed(StreamBody::new(stream)), content_type))
}

/// Reads a whole JSON body into `T`; an empty body is `T::default()` where docker allows it.
pub(crate) async fn read_json<T: serde::de::DeserializeOwned>(body: Incoming, what: &str) -> Result<T, ApiError> {
    let bytes = read_limited(body, MAX_JSON_BODY).await?;
    serde_json::from_slice(&bytes).map_err(|e| ApiError::bad_request(format!("invalid JSON in the {what}: {e}")))
}

/// The whole body, or 413 past `limit` bytes.
pub(crate) async fn read_limited(body: Incoming, limit: usize) -> Result<Bytes, ApiError> {
    match http_body_util::Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => {
            Err(ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, format!("request body larger than {limit} bytes")))
        }
        Err(e) => Err(ApiError::bad_request(format!("reading the request body: {e}"))),
    }
}

/// The body as a blocking reader, for the library crates' `Read` consumers (a build context,
/// an archive to load). Must be called on the runtime; read on a blocking thread.
pub(crate) fn body_reader(body: Incoming) -> impl std::io::Read + Send + 'static {
    let stream = http_body_util::BodyDataStream::new(body).map(|r| r.map_err(std::io::Error::other));
    tokio_util::io::SyncIoBridge::new(tokio_util::io::StreamReader::new(stream))
}

/// Reads a body to its end after its consumer stopped. A tar reader stops at the archive's end
/// marker, before the client's padding and the chunked body's last chunk; hyper closes a
/// connection whose request body was left unread, and a client still writing it then fails
/// with a broken pipe instead of reading the answer. Read on a blocking thread.
pub(crate) fn drain(body: &mut impl std::io::Read) -> std::io::Result<u64> {
    std::io::copy(body, &mut std::io::sink())
}

impl Lines {
    /// Resolves when the client stopped reading (the connection is gone).
    pub(crate) async fn closed(&self) {
        self.0.closed().await
    }

    /// Whether the client stopped reading.
    pub(crate) fn is_closed(&self) -> bool {
        self.0.is_closed()
    }
}
