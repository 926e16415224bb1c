//! A typed mTLS client for `isx.v1.Exchange`.

use std::path::PathBuf;

use isx_core::NodeId;
use isx_core::wire::exchange_client::ExchangeClient;
use isx_core::wire::{
    AccessDecision, AccessRequest, AccessState, AckRequest, AckResponse, Alert, AlertStatus, AllowOnwardRequest,
    AmendRequest, AmendResponse, ChangeConfirmation, DecideAccessRequest, DeclineFollowUpRequest,
    GetAlertStatusRequest, LiftRestrictionRequest, ListAccessRequestsRequest, ListAccessRequestsResponse,
    ListOpenHitsRequest, LookupIdentifier, LookupRequest, LookupResponse, OpenHit, PublishRequest, PublishResponse,
    RequestAccessRequest, RestrictRequest, SubscribeRequest, SubscribeResponse, WithdrawRequest,
};
use isx_tls::config::IdentityFiles;
use rustls_pki_types::ServerName;
use tokio::net::TcpStream;
use tonic::metadata::MetadataValue;
use tonic::transport::{Channel, Endpoint};
use tonic::{Request, Status, Streaming};

/// The metadata key that names the acting officer.
pub const OFFICER_HEADER: &str = "x-isx-officer";

/// Why a client could not be built or connect.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// TLS material is missing or invalid.
    #[error(transparent)]
    Tls(#[from] isx_tls::TlsError),
    /// The gateway address is not `host:port`.
    #[error("gateway address {0:?} is not host:port")]
    BadAddress(String),
    /// The officer name is not valid metadata.
    #[error("officer {0:?} must be printable ASCII")]
    BadOfficer(String),
    /// The connection failed.
    #[error("cannot connect to the gateway at {addr}: {source}")]
    Connect {
        /// The address.
        addr: String,
        /// The transport error.
        source: tonic::transport::Error,
    },
    /// The gateway refused the connection; why, and the fix, as
    /// `diagnose` found it (see `diagnose::connect`).
    #[error("{0}")]
    Refused(String),
}

/// How to reach the gateway and as whom.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// The node identity whose certificate to present.
    pub node: NodeId,
    /// The PKI directory with `ca.crt`, `<node>.crt` and `<node>.key`.
    pub pki_dir: PathBuf,
    /// The gateway's `host:port`.
    pub gateway: String,
    /// The officer named in `x-isx-officer` on every call.
    pub officer: String,
}

/// An mTLS connection to the gateway as one node.
#[derive(Debug, Clone)]
pub struct Client {
    exchange: ExchangeClient<Channel>,
    channel: Channel,
    officer: MetadataValue<tonic::metadata::Ascii>,
    node: NodeId,
}

fn server_name(host: &str) -> Result<ServerName<'static>, ClientError> {
    ServerName::try_from(host.trim_start_matches('[').trim_end_matches(']').to_owned())
        .map_err(|_| ClientError::BadAddress(host.to_owned()))
}

/// Opens an mTLS HTTP/2 channel to `gateway` presenting `files`' certificate.
pub async fn connect_channel(gateway: &str, files: &IdentityFiles) -> Result<Channel, ClientError> {
    connect_channel_with_window(gateway, files, None).await
}

/// As [`connect_channel`], with an HTTP/2 receive window of `window` bytes
/// (per stream and per connection) instead of the defaults (2 MB and 5 MB):
/// a small window makes a node that reads slowly push back on the gateway sooner.
pub async fn connect_channel_with_window(
    gateway: &str,
    files: &IdentityFiles,
    window: Option<u32>,
) -> Result<Channel, ClientError> {
    let tls = isx_tls::client_config(files)?;
    let (host, _port) = gateway.rsplit_once(':').ok_or_else(|| ClientError::BadAddress(gateway.to_owned()))?;
    let name = server_name(host)?;
    let addr = gateway.to_owned();
    let endpoint = Endpoint::from_shared(format!("http://{gateway}"))
        .map_err(|_| ClientError::BadAddress(gateway.to_owned()))?
        .tcp_nodelay(true)
        .http2_keep_alive_interval(std::time::Duration::from_secs(30))
        .initial_stream_window_size(window)
        .initial_connection_window_size(window);
    let connector = tokio_rustls::TlsConnector::from(tls);
    endpoint
        .connect_with_connector(tower::service_fn(move |_uri| {
            let (connector, name, addr) = (connector.clone(), name.clone(), addr.clone());
            async move {
                let tcp = TcpStream::connect(&addr).await?;
                tcp.set_nodelay(true)?;
                let tls = connector.connect(name, tcp).await?;
                Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(tls))
            }
        }))
        .await
        .map_err(|source| ClientError::Connect { addr: gateway.to_owned(), source })
}

impl Client {
    /// Connects to the gateway as `opts.node`.
    pub async fn connect(opts: &ClientOptions) -> Result<Self, ClientError> {
        Self::connect_with_window(opts, None).await
    }

    /// Connects with an HTTP/2 receive window of `window` bytes (see [`connect_channel_with_window`]).
    pub async fn connect_with_window(opts: &ClientOptions, window: Option<u32>) -> Result<Self, ClientError> {
        let officer = MetadataValue::try_from(opts.officer.as_str())
            .map_err(|_| ClientError::BadOfficer(opts.officer.clone()))?;
        let files = IdentityFiles::in_dir(&opts.pki_dir, opts.node.as_str());
        let channel = connect_channel_with_window(&opts.gateway, &files, window).await?;
        let exchange = ExchangeClient::new(channel.clone()).max_decoding_message_size(16 * 1024 * 1024);
        Ok(Self { exchange, channel, officer, node: opts.node.clone() })
    }

    /// The node this client acts as.
    pub fn node(&self) -> &NodeId {
        &self.node
    }

    /// The underlying channel, for other services on the gateway (health, audit).
    pub fn channel(&self) -> Channel {
        self.channel.clone()
    }

    /// A copy that names another officer.
    pub fn with_officer(&self, officer: &str) -> Result<Self, ClientError> {
        let officer = MetadataValue::try_from(officer).map_err(|_| ClientError::BadOfficer(officer.to_owned()))?;
        Ok(Self { officer, ..self.clone() })
    }

    /// A copy that sends no `x-isx-officer` (to test that the gateway refuses it).
    pub fn without_officer(&self) -> Self {
        Self { officer: MetadataValue::from_static(""), ..self.clone() }
    }

    /// Wraps `msg` in a request that carries the officer.
    pub fn request<T>(&self, msg: T) -> Request<T> {
        let mut req = Request::new(msg);
        if !self.officer.is_empty() {
            req.metadata_mut().insert(OFFICER_HEADER, self.officer.clone());
        }
        req
    }

    /// Publishes an alert and returns the receipt.
    pub async fn publish(&self, alert: Alert) -> Result<PublishResponse, Status> {
        let req = self.request(PublishRequest { alert: Some(alert) });
        Ok(self.exchange.clone().publish(req).await?.into_inner())
    }

    /// Opens the delivery stream after `after_cursor` (0: the oldest unacknowledged).
    pub async fn subscribe(&self, after_cursor: u64) -> Result<Streaming<SubscribeResponse>, Status> {
        let req = self.request(SubscribeRequest { after_cursor });
        Ok(self.exchange.clone().subscribe(req).await?.into_inner())
    }

    /// Acknowledges every delivery up to `cursor`.
    pub async fn ack(&self, cursor: u64) -> Result<AckResponse, Status> {
        self.ack_with(cursor, vec![]).await
    }

    /// Acknowledges every delivery up to `cursor`, and confirms the changes
    /// applied to this node's copies (each flushed before this call).
    pub async fn ack_with(&self, cursor: u64, confirmations: Vec<ChangeConfirmation>) -> Result<AckResponse, Status> {
        let req = self.request(AckRequest { cursor, confirmations });
        Ok(self.exchange.clone().ack(req).await?.into_inner())
    }

    /// As the origin, publishes a new version of `alert` (same id) that
    /// replaces version `replaces_version`, for `reason`.
    pub async fn amend(&self, alert: Alert, replaces_version: u32, reason: &str) -> Result<AmendResponse, Status> {
        let req = self.request(AmendRequest { alert: Some(alert), replaces_version, reason: reason.to_owned() });
        Ok(self.exchange.clone().amend(req).await?.into_inner())
    }

    /// As the origin, withdraws an alert: every copy is to be deleted.
    pub async fn withdraw(&self, alert_id: &str, reason: &str) -> Result<AlertStatus, Status> {
        let req = self.request(WithdrawRequest { alert_id: alert_id.to_owned(), reason: reason.to_owned() });
        Ok(self.exchange.clone().withdraw(req).await?.into_inner().status.unwrap_or_default())
    }

    /// As the origin, restricts an alert's processing while it is checked.
    pub async fn restrict(&self, alert_id: &str, reason: &str) -> Result<AlertStatus, Status> {
        let req = self.request(RestrictRequest { alert_id: alert_id.to_owned(), reason: reason.to_owned() });
        Ok(self.exchange.clone().restrict(req).await?.into_inner().status.unwrap_or_default())
    }

    /// As the origin, lifts an alert's restriction.
    pub async fn lift_restriction(&self, alert_id: &str, reason: &str) -> Result<AlertStatus, Status> {
        let req = self.request(LiftRestrictionRequest { alert_id: alert_id.to_owned(), reason: reason.to_owned() });
        Ok(self.exchange.clone().lift_restriction(req).await?.into_inner().status.unwrap_or_default())
    }

    /// As the origin, an alert's versions and who confirmed its last change.
    pub async fn alert_status(&self, alert_id: &str) -> Result<AlertStatus, Status> {
        let req = self.request(GetAlertStatusRequest { alert_id: alert_id.to_owned() });
        Ok(self.exchange.clone().get_alert_status(req).await?.into_inner().status.unwrap_or_default())
    }

    /// This node's open hits: shown, not yet followed up or declined.
    pub async fn open_hits(&self) -> Result<Vec<OpenHit>, Status> {
        let req = self.request(ListOpenHitsRequest {});
        Ok(self.exchange.clone().list_open_hits(req).await?.into_inner().hits)
    }

    /// Looks the identifiers up: hit flags only.
    pub async fn lookup(
        &self,
        identifiers: Vec<LookupIdentifier>,
        purpose: &str,
        justification: &str,
    ) -> Result<LookupResponse, Status> {
        let req = self.request(LookupRequest {
            identifiers,
            purpose: purpose.to_owned(),
            justification: justification.to_owned(),
        });
        Ok(self.exchange.clone().lookup(req).await?.into_inner())
    }

    /// Asks the holder of a hit for the alert.
    pub async fn request_access(
        &self,
        hit_id: &str,
        purpose: &str,
        justification: &str,
    ) -> Result<AccessRequest, Status> {
        let req = self.request(RequestAccessRequest {
            hit_id: hit_id.to_owned(),
            purpose: purpose.to_owned(),
            justification: justification.to_owned(),
        });
        Ok(self.exchange.clone().request_access(req).await?.into_inner().request.unwrap_or_default())
    }

    /// Grants (`true`) or denies an access request for one of this node's alerts.
    pub async fn decide_access(&self, request_id: &str, grant: bool, reason: &str) -> Result<AccessRequest, Status> {
        let decision = if grant { AccessDecision::Grant } else { AccessDecision::Deny };
        let req = self.request(DecideAccessRequest {
            request_id: request_id.to_owned(),
            decision: decision as i32,
            reason: reason.to_owned(),
        });
        Ok(self.exchange.clone().decide_access(req).await?.into_inner().request.unwrap_or_default())
    }

    /// As the origin of `alert_id`, lets `recipients` receive onward copies
    /// (relays) of it. Returns every organisation now allowed.
    pub async fn allow_onward(
        &self,
        alert_id: &str,
        recipients: &[String],
        reason: &str,
    ) -> Result<Vec<String>, Status> {
        let req = self.request(AllowOnwardRequest {
            alert_id: alert_id.to_owned(),
            recipients: recipients.to_vec(),
            reason: reason.to_owned(),
        });
        Ok(self.exchange.clone().allow_onward(req).await?.into_inner().allowed)
    }

    /// [`Client::decide_access`] with `officer` sent as the one who decides
    /// (a standing rule, for instance) instead of this client's officer.
    pub async fn decide_access_as(
        &self,
        request_id: &str,
        grant: bool,
        reason: &str,
        officer: &str,
    ) -> Result<AccessRequest, Status> {
        let decision = if grant { AccessDecision::Grant } else { AccessDecision::Deny };
        let mut req = Request::new(DecideAccessRequest {
            request_id: request_id.to_owned(),
            decision: decision as i32,
            reason: reason.to_owned(),
        });
        let value = MetadataValue::try_from(officer)
            .map_err(|_| Status::invalid_argument(format!("officer {officer:?} is not printable ASCII")))?;
        req.metadata_mut().insert(OFFICER_HEADER, value);
        Ok(self.exchange.clone().decide_access(req).await?.into_inner().request.unwrap_or_default())
    }

    /// Records why a hit is not followed up.
    pub async fn decline_follow_up(&self, hit_id: &str, reason: &str) -> Result<(), Status> {
        let req = self.request(DeclineFollowUpRequest { hit_id: hit_id.to_owned(), reason: reason.to_owned() });
        self.exchange.clone().decline_follow_up(req).await?;
        Ok(())
    }

    /// The access requests this node made or must decide, optionally only those in `state`.
    pub async fn list_access_requests(&self, state: Option<AccessState>) -> Result<ListAccessRequestsResponse, Status> {
        let state = state.unwrap_or(AccessState::Unspecified) as i32;
        let req = self.request(ListAccessRequestsRequest { state });
        Ok(self.exchange.clone().list_access_requests(req).await?.into_inner())
    }
}

/// The canonical name of a gRPC status code, as the gRPC specification
/// and other tools write it (`PERMISSION_DENIED`).
pub fn code_name(code: tonic::Code) -> &'static str {
    use tonic::Code;
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

/// An error and its causes on one line, each cause once: a cause whose text
/// the line already holds (an error that prints its source and also returns
/// it) is left out, e.g. `transport error: tcp connect error: Connection
/// refused (os error 111)`.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut line = String::new();
    let mut cause = Some(e);
    // Bounded: an error's chain of causes is finite.
    while let Some(c) = cause {
        let text = c.to_string();
        let text = text.trim();
        if !text.is_empty() && !line.contains(text) {
            if !line.is_empty() {
                line.push_str(": ");
            }
            line.push_str(text);
        }
        cause = c.source();
    }
    line
}
