//! Admission before decoding, for every request of every service.
//!
//! 1. The connection is marked as having sent a request (the header-read
//!    watchdog in `accept` closes one that sends none in time).
//! 2. The request takes a token from its node's rate limiter.
//! 3. Its body is read within `limits.request_body_timeout`, and only while
//!    the gRPC length prefix and the bytes so far stay within the call's
//!    limit (`limits.max_alert_bytes` plus a margin for `Publish`,
//!    `limits.max_request_bytes` for everything else). Only then does tonic
//!    decode it, from memory; a request refused by its rate is read within
//!    the same bounds and dropped undecoded.
//!
//! Health checks and reflection take no rate token (they do no work beyond a
//! lookup and write nothing). Reflection streams requests for as long as a
//! client browses; its body is passed through, limited in total to
//! `limits.max_request_bytes`.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt;
use tonic::Status;
use tonic::body::Body;

use crate::conn::{ConnInfo, RequestInfo};
use crate::error::RequestError;
use crate::refusal::refusal_status;
use crate::state::State;

/// What a request's path names, for its limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Call {
    /// `isx.v1.Exchange/Publish`: an alert.
    Publish,
    /// Any other call of isx (Exchange, Audit).
    Isx,
    /// `grpc.health.v1.Health`: a probe, not rate-limited (it reads one map
    /// entry and writes nothing).
    Health,
    /// A bidirectional stream (server reflection), not rate-limited.
    Reflection,
}

impl Call {
    /// The call behind an HTTP/2 `:path`.
    pub fn of(path: &str) -> Self {
        if path == "/isx.v1.Exchange/Publish" {
            Self::Publish
        } else if path.starts_with("/grpc.reflection.") {
            Self::Reflection
        } else if path.starts_with("/grpc.health.") {
            Self::Health
        } else {
            Self::Isx
        }
    }

    /// True if the call takes a token of its node's request rate.
    fn rate_limited(self) -> bool {
        matches!(self, Self::Publish | Self::Isx)
    }
}

/// The tower layer that puts [`Admission`] in front of every service.
#[derive(Debug, Clone)]
pub(crate) struct AdmissionLayer {
    /// The gateway's shared state.
    pub state: Arc<State>,
}

impl<S> tower::Layer<S> for AdmissionLayer {
    type Service = Admission<S>;
    fn layer(&self, inner: S) -> Admission<S> {
        Admission { inner, state: self.state.clone() }
    }
}

/// See the module docs.
#[derive(Debug, Clone)]
pub(crate) struct Admission<S> {
    /// The routes.
    inner: S,
    /// The gateway's shared state.
    state: Arc<State>,
}

/// Why a body was not read.
#[derive(Debug)]
enum BodyError {
    /// The length prefix or the bytes passed the limit.
    TooLarge(usize),
    /// The transport failed.
    Transport(Status),
}

/// Reads a whole request body, refusing as soon as its first gRPC message's
/// length prefix, or the bytes so far, pass `limit`.
async fn read_body(mut body: Body, limit: usize) -> Result<Bytes, BodyError> {
    let mut buf = BytesMut::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(BodyError::Transport)?;
        let Ok(data) = frame.into_data() else { continue };
        buf.extend_from_slice(&data);
        if buf.len() >= 5 {
            let declared = u32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]) as usize;
            if declared > limit {
                return Err(BodyError::TooLarge(declared));
            }
        }
        if buf.len() > limit.saturating_add(5) {
            return Err(BodyError::TooLarge(buf.len() - 5));
        }
    }
    Ok(buf.freeze())
}

/// A gRPC error answer, as tonic would write it.
fn answer(status: Status) -> http::Response<Body> {
    status.into_http()
}

impl<S> tower::Service<http::Request<Body>> for Admission<S>
where
    S: tower::Service<http::Request<Body>, Response = http::Response<Body>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<Body>) -> Self::Future {
        // The clone is ready only if polled; take the one that was.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let state = self.state.clone();
        Box::pin(async move {
            let call = Call::of(req.uri().path());
            let conn = req.extensions().get::<ConnInfo>().cloned();
            if let Some(conn) = &conn {
                conn.mark_requested();
            }
            let limits = &state.limits;
            let (limit, key) = match call {
                Call::Publish => (limits.max_publish_bytes(), "limits.max_alert_bytes"),
                Call::Isx | Call::Health | Call::Reflection => (limits.max_request_bytes, "limits.max_request_bytes"),
            };
            let admitted = match &conn {
                Some(conn) if call.rate_limited() => state.admit(&conn.identity.node),
                _ => Ok(()),
            };
            if call == Call::Reflection {
                let (parts, body) = req.into_parts();
                let limited = http_body_util::Limited::new(body, limit)
                    .map_err(move |e| Status::resource_exhausted(format!("{key}: {e}")));
                return inner.call(http::Request::from_parts(parts, Body::new(limited))).await;
            }
            let info = RequestInfo::of_http(&req);
            let (parts, body) = req.into_parts();
            // A refused request's body is still read (within the same limits)
            // and dropped: answering before it ends would reset the stream,
            // and HTTP/2 closes a connection that resets too many.
            let read = tokio::time::timeout(limits.request_body_timeout, read_body(body, limit)).await;
            let refused = match (admitted, read) {
                (Err(e), _) => e,
                (Ok(()), Ok(Ok(bytes))) => {
                    let body = Body::new(http_body_util::Full::new(bytes).map_err(|never| match never {}));
                    return inner.call(http::Request::from_parts(parts, body)).await;
                }
                (Ok(()), Ok(Err(BodyError::Transport(status)))) => return Ok(answer(status)),
                (Ok(()), Ok(Err(BodyError::TooLarge(size)))) => RequestError::RequestTooLarge { size, limit, key },
                (Ok(()), Err(_)) => RequestError::BodyTimeout { timeout: limits.request_body_timeout },
            };
            Ok(answer(refusal_status(&state, &info, refused).await))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn framed(len: u32, have: usize) -> Body {
        let mut b = vec![0u8];
        b.extend_from_slice(&len.to_be_bytes());
        b.extend(std::iter::repeat_n(7u8, have));
        Body::new(http_body_util::Full::new(Bytes::from(b)).map_err(|never| match never {}))
    }

    #[tokio::test]
    async fn a_body_is_refused_by_its_length_prefix_before_it_is_read() {
        assert_eq!(read_body(framed(10, 10), 16).await.unwrap().len(), 15);
        assert!(matches!(read_body(framed(1 << 30, 3), 16).await, Err(BodyError::TooLarge(n)) if n == 1 << 30));
        assert!(matches!(read_body(framed(4, 40), 16).await, Err(BodyError::TooLarge(40))), "bytes past the limit");
    }

    #[test]
    fn calls_by_path() {
        assert_eq!(Call::of("/isx.v1.Exchange/Publish"), Call::Publish);
        assert_eq!(Call::of("/isx.v1.Exchange/Lookup"), Call::Isx);
        assert_eq!(Call::of("/isx.v1.Audit/Export"), Call::Isx);
        assert_eq!(Call::of("/isx.v1.Nothing/Here"), Call::Isx, "unknown paths are limited like isx calls");
        assert_eq!(Call::of("/grpc.health.v1.Health/Check"), Call::Health);
        assert_eq!(Call::of("/grpc.reflection.v1.ServerReflection/ServerReflectionInfo"), Call::Reflection);
        assert!(Call::Publish.rate_limited() && Call::Isx.rate_limited());
        assert!(!Call::Health.rate_limited() && !Call::Reflection.rate_limited());
    }
}
