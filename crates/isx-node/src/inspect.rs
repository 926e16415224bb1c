//! The mock agency's inspect service: a local, read-only view of what it
//! holds (`isx.v1.Inspect`, `proto/isx/v1/inspect.proto`).
//!
//! A running agency holds its sled store's lock, so no other process can
//! open the store to see what arrived. While it runs, the agency serves this
//! service on a Unix socket in its data directory ([`socket_path`],
//! `<data_dir>/inspect.sock`): never on the network, and the socket file is
//! made mode 0600 in a data directory created 0700, so only the agency's
//! user can connect. The service only reads the [`Inbox`].
//!
//! [`InspectClient`] is its client (`isx agency show`, and the scenario
//! runner against agencies that run in other processes).

use std::path::{Path, PathBuf};
use std::time::Duration;

use isx_core::NodeId;
use isx_core::wire::inspect_client::InspectClient as RawClient;
use isx_core::wire::inspect_server::{Inspect, InspectServer};
use isx_core::wire::{
    AccessRequest, InspectDescribeRequest, InspectDescribeResponse, InspectListAccessRequestsRequest,
    InspectListAccessRequestsResponse, InspectListReceivedRequest, InspectListReceivedResponse, ReceivedAlert,
};
use tokio_util::sync::CancellationToken;
use tonic::transport::{Channel, Endpoint};
use tonic::{Request, Response, Status};

use crate::inbox::{Inbox, Received};

/// The socket's file name in the agency's data directory.
pub const SOCKET_NAME: &str = "inspect.sock";

/// The most alerts one `ListReceived` answer holds.
pub const PAGE_LIMIT: u32 = 500;

/// How long a client waits to connect or for one answer.
pub const CALL_LIMIT: Duration = Duration::from_secs(10);

/// The inspect socket of the agency whose data directory is `data_dir`.
pub fn socket_path(data_dir: &Path) -> PathBuf {
    data_dir.join(SOCKET_NAME)
}

/// Why the inspect service could not be served or asked.
#[derive(Debug, thiserror::Error)]
pub enum InspectError {
    /// The socket could not be bound or its file prepared.
    #[error("inspect socket {path}: {source}")]
    Socket {
        /// The socket file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The server failed.
    #[error("inspect service on {path}: {source}")]
    Serve {
        /// The socket file.
        path: PathBuf,
        /// The transport error.
        source: tonic::transport::Error,
    },
    /// Nothing answers on the socket (no agency runs there, or it left a stale file).
    #[error("no agency answers on {path}: {reason}")]
    NotRunning {
        /// The socket file.
        path: PathBuf,
        /// Why the connection failed.
        reason: String,
    },
    /// The agency answered a call with an error.
    #[error("the agency on {path} answered {}: {message}", crate::code_name(*code))]
    Call {
        /// The socket file.
        path: PathBuf,
        /// The gRPC code.
        code: tonic::Code,
        /// Its message.
        message: String,
    },
}

/// Serves `inbox` read-only, as `node`'s inspect service.
#[derive(Debug, Clone)]
pub struct InspectService {
    node: NodeId,
    inbox: Inbox,
}

impl InspectService {
    /// The service over `inbox`.
    pub fn new(node: NodeId, inbox: Inbox) -> Self {
        Self { node, inbox }
    }
}

fn internal(e: impl std::fmt::Display) -> Status {
    Status::internal(e.to_string())
}

/// The wire form of a kept record.
pub fn to_wire(r: Received) -> ReceivedAlert {
    ReceivedAlert {
        alert_id: r.alert_id().to_owned(),
        level: r.level() as i32,
        cursor: r.cursor,
        received_at: Some(isx_core::timestamp::from_unix_millis(r.received_ms)),
        duplicates: r.duplicates,
        version: r.version,
        restricted: r.restricted,
        deleted_at: (r.deleted_ms != 0).then(|| isx_core::timestamp::from_unix_millis(r.deleted_ms)),
        last_change: r.last_change,
        delivery: r.delivery,
    }
}

/// A kept record from its wire form.
pub fn from_wire(r: ReceivedAlert) -> Received {
    Received {
        received_ms: r.received_at.as_ref().map(isx_core::timestamp::to_unix_millis).unwrap_or(0),
        cursor: r.cursor,
        duplicates: r.duplicates,
        version: r.version,
        restricted: r.restricted,
        deleted_ms: r.deleted_at.as_ref().map(isx_core::timestamp::to_unix_millis).unwrap_or(0),
        id: r.alert_id,
        last_change: r.last_change,
        delivery: r.delivery,
    }
}

#[tonic::async_trait]
impl Inspect for InspectService {
    async fn describe(&self, _: Request<InspectDescribeRequest>) -> Result<Response<InspectDescribeResponse>, Status> {
        let access_requests = self.inbox.access_requests().map_err(internal)?.len() as u64;
        Ok(Response::new(InspectDescribeResponse {
            node: self.node.to_string(),
            received: self.inbox.len() as u64,
            access_requests,
        }))
    }

    async fn list_received(
        &self,
        request: Request<InspectListReceivedRequest>,
    ) -> Result<Response<InspectListReceivedResponse>, Status> {
        let req = request.into_inner();
        if !req.alert_id.is_empty() {
            let received = self.inbox.get(&req.alert_id).map_err(internal)?.into_iter().map(to_wire).collect();
            return Ok(Response::new(InspectListReceivedResponse { received, next_offset: 0 }));
        }
        let limit = match req.limit {
            0 => PAGE_LIMIT,
            n => n.min(PAGE_LIMIT),
        } as usize;
        let all = self.inbox.list().map_err(internal)?;
        let start = usize::try_from(req.offset).unwrap_or(usize::MAX).min(all.len());
        let end = start.saturating_add(limit).min(all.len());
        let next_offset = if end < all.len() { end as u64 } else { 0 };
        let received = all.into_iter().skip(start).take(end - start).map(to_wire).collect();
        Ok(Response::new(InspectListReceivedResponse { received, next_offset }))
    }

    async fn list_access_requests(
        &self,
        request: Request<InspectListAccessRequestsRequest>,
    ) -> Result<Response<InspectListAccessRequestsResponse>, Status> {
        let req = request.into_inner();
        let requests = if req.request_id.is_empty() {
            self.inbox.access_requests().map_err(internal)?
        } else {
            self.inbox.access_request(&req.request_id).map_err(internal)?.into_iter().collect()
        };
        Ok(Response::new(InspectListAccessRequestsResponse { requests }))
    }
}

/// Binds `path` (replacing a stale socket file) with mode 0600.
///
/// Call only while holding the agency's store: its lock proves that no other
/// agency uses this data directory, so a socket file already there is stale.
pub fn bind(path: &Path) -> Result<tokio::net::UnixListener, InspectError> {
    let io = |source| InspectError::Socket { path: path.to_owned(), source };
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io(e)),
    }
    let listener = tokio::net::UnixListener::bind(path).map_err(io)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(io)?;
    }
    Ok(listener)
}

/// Serves `service` on `listener` (bound at `path`) until `shutdown`, then
/// removes the socket file.
pub async fn serve(
    listener: tokio::net::UnixListener,
    path: PathBuf,
    service: InspectService,
    shutdown: CancellationToken,
) -> Result<(), InspectError> {
    let incoming = tokio_stream::wrappers::UnixListenerStream::new(listener);
    let result = tonic::transport::Server::builder()
        .add_service(InspectServer::new(service))
        .serve_with_incoming_shutdown(incoming, shutdown.cancelled())
        .await;
    let _ = std::fs::remove_file(&path);
    result.map_err(|source| InspectError::Serve { path, source })
}

/// A client of one agency's inspect service.
#[derive(Debug, Clone)]
pub struct InspectClient {
    raw: RawClient<Channel>,
    path: PathBuf,
}

impl InspectClient {
    /// Connects to the socket at `path`; [`InspectError::NotRunning`] if
    /// nothing answers there within [`CALL_LIMIT`].
    pub async fn connect(path: &Path) -> Result<Self, InspectError> {
        let not_running = |reason: String| InspectError::NotRunning { path: path.to_owned(), reason };
        if !path.exists() {
            return Err(not_running("there is no socket file".into()));
        }
        let socket = path.to_owned();
        // The URI is unused: the connector dials the socket.
        let endpoint = Endpoint::from_static("http://inspect.local").connect_timeout(CALL_LIMIT).timeout(CALL_LIMIT);
        let channel = endpoint
            .connect_with_connector(tower::service_fn(move |_| {
                let socket = socket.clone();
                async move {
                    let stream = tokio::net::UnixStream::connect(socket).await?;
                    Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(stream))
                }
            }))
            .await
            .map_err(|e| not_running(crate::error_chain(&e)))?;
        let raw = RawClient::new(channel).max_decoding_message_size(64 << 20);
        Ok(Self { raw, path: path.to_owned() })
    }

    /// The socket this client talks to.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn call_error(&self, s: Status) -> InspectError {
        InspectError::Call { path: self.path.clone(), code: s.code(), message: s.message().to_owned() }
    }

    /// Which node the agency is, and how much it holds.
    pub async fn describe(&self) -> Result<InspectDescribeResponse, InspectError> {
        let mut raw = self.raw.clone();
        raw.describe(InspectDescribeRequest {}).await.map(Response::into_inner).map_err(|s| self.call_error(s))
    }

    /// The record of one alert, if the agency holds it.
    pub async fn get(&self, alert_id: &str) -> Result<Option<Received>, InspectError> {
        let mut raw = self.raw.clone();
        let req = InspectListReceivedRequest { alert_id: alert_id.to_owned(), ..Default::default() };
        let resp = raw.list_received(req).await.map_err(|s| self.call_error(s))?.into_inner();
        Ok(resp.received.into_iter().next().map(from_wire))
    }

    /// Every alert the agency holds, oldest first (page by page).
    pub async fn list(&self) -> Result<Vec<ReceivedAlert>, InspectError> {
        let mut raw = self.raw.clone();
        let mut all = Vec::new();
        let mut offset = 0;
        // Bounded: each page moves the offset forward, and the list is finite.
        loop {
            let req = InspectListReceivedRequest { offset, limit: PAGE_LIMIT, ..Default::default() };
            let resp = raw.list_received(req).await.map_err(|s| self.call_error(s))?.into_inner();
            all.extend(resp.received);
            if resp.next_offset <= offset {
                return Ok(all);
            }
            offset = resp.next_offset;
        }
    }

    /// The latest known state of one access request.
    pub async fn access_request(&self, request_id: &str) -> Result<Option<AccessRequest>, InspectError> {
        let mut raw = self.raw.clone();
        let req = InspectListAccessRequestsRequest { request_id: request_id.to_owned() };
        let resp = raw.list_access_requests(req).await.map_err(|s| self.call_error(s))?.into_inner();
        Ok(resp.requests.into_iter().next())
    }

    /// Every access request the agency knows of.
    pub async fn access_requests(&self) -> Result<Vec<AccessRequest>, InspectError> {
        let mut raw = self.raw.clone();
        let req = InspectListAccessRequestsRequest::default();
        Ok(raw.list_access_requests(req).await.map_err(|s| self.call_error(s))?.into_inner().requests)
    }
}

#[cfg(test)]
mod tests {
    use isx_core::wire::{Alert, Delivery, DisclosureLevel};

    use super::*;

    fn delivery(id: &str, level: DisclosureLevel) -> Delivery {
        Delivery {
            alert: Some(Alert { alert_id: id.into(), narrative: "n".into(), ..Default::default() }),
            level: level as i32,
            ..Default::default()
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_service_shows_what_the_inbox_holds_on_a_private_socket() {
        let dir = tempfile::tempdir().unwrap();
        let inbox = Inbox::open(dir.path(), &dir.path().join("n.store.key")).unwrap();
        inbox.store(7, delivery("a-1", DisclosureLevel::Redacted), 1_000).await.unwrap();
        inbox.store(8, delivery("a-2", DisclosureLevel::Full), 2_000).await.unwrap();
        inbox.store(9, delivery("a-2", DisclosureLevel::Full), 3_000).await.unwrap();
        let path = socket_path(dir.path());
        std::fs::write(&path, "stale").unwrap();
        let listener = bind(&path).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        }
        let shutdown = CancellationToken::new();
        let service = InspectService::new(NodeId::new("fr-police").unwrap(), inbox.clone());
        let server = tokio::spawn(serve(listener, path.clone(), service, shutdown.clone()));

        let client = InspectClient::connect(&path).await.unwrap();
        let about = client.describe().await.unwrap();
        assert_eq!((about.node.as_str(), about.received), ("fr-police", 2));
        let all = client.list().await.unwrap();
        let seen: Vec<(&str, i32, u64, u32)> =
            all.iter().map(|r| (r.alert_id.as_str(), r.level, r.cursor, r.duplicates)).collect();
        assert_eq!(
            seen,
            [("a-1", DisclosureLevel::Redacted as i32, 7, 0), ("a-2", DisclosureLevel::Full as i32, 8, 1)]
        );
        assert_eq!(all[0].delivery.as_ref().unwrap().alert.as_ref().unwrap().narrative, "n");
        let one = client.get("a-1").await.unwrap().expect("held");
        assert_eq!((one.received_ms, one.level()), (1_000, DisclosureLevel::Redacted));
        assert!(client.get("a-3").await.unwrap().is_none());

        shutdown.cancel();
        server.await.unwrap().unwrap();
        assert!(!path.exists(), "the socket file is removed when the agency stops");
        let err = InspectClient::connect(&path).await.unwrap_err();
        assert!(matches!(err, InspectError::NotRunning { .. }), "{err}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn pages_cover_every_alert_once() {
        let dir = tempfile::tempdir().unwrap();
        let inbox = Inbox::open(dir.path(), &dir.path().join("n.store.key")).unwrap();
        let n = PAGE_LIMIT as u64 + 3;
        for i in 0..n {
            inbox.put(i + 1, delivery(&format!("a-{i:04}"), DisclosureLevel::Full), i).unwrap();
        }
        inbox.flush_stored(n).await.unwrap();
        let path = socket_path(dir.path());
        let listener = bind(&path).unwrap();
        let shutdown = CancellationToken::new();
        let service = InspectService::new(NodeId::new("fr-police").unwrap(), inbox);
        let server = tokio::spawn(serve(listener, path.clone(), service, shutdown.clone()));
        let all = InspectClient::connect(&path).await.unwrap().list().await.unwrap();
        let ids: Vec<String> = all.into_iter().map(|r| r.alert_id).collect();
        let want: Vec<String> = (0..n).map(|i| format!("a-{i:04}")).collect();
        assert_eq!(ids, want);
        shutdown.cancel();
        server.await.unwrap().unwrap();
    }
}
