//! Who is on the other end of a connection.

use isx_core::NodeId;
use rustls_pki_types::CertificateDer;
use sha2::{Digest, Sha256};

use crate::crl::Serial;
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

/// The identity proved by a verified client certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerIdentity {
    /// The node id from the certificate's SAN URI.
    pub node: NodeId,
    /// SHA-256 of the certificate's DER encoding, lower-case hex.
    pub fingerprint: String,
}

/// Why a certificate carries no usable node identity.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// The DER does not parse as an X.509 certificate.
    #[error("client certificate does not parse: {0}")]
    Parse(String),
    /// No SAN URI of the form `spiffe://isx/node/<id>`.
    #[error("client certificate has no SAN URI spiffe://isx/node/<id>")]
    NoNodeUri,
    /// More than one node URI: the identity would be ambiguous.
    #[error("client certificate names more than one node")]
    Ambiguous,
}

/// Reads the node identity from an end-entity certificate that TLS already verified.
pub fn peer_identity(cert: &CertificateDer<'_>) -> Result<PeerIdentity, IdentityError> {
    let (_, parsed) = X509Certificate::from_der(cert.as_ref()).map_err(|e| IdentityError::Parse(e.to_string()))?;
    let mut nodes = Vec::new();
    if let Ok(Some(san)) = parsed.subject_alternative_name() {
        for name in &san.value.general_names {
            if let GeneralName::URI(uri) = name
                && let Some(id) = NodeId::from_san_uri(uri)
            {
                nodes.push(id);
            }
        }
    }
    let node = match nodes.len() {
        0 => return Err(IdentityError::NoNodeUri),
        1 => nodes.pop().expect("one element"),
        _ => return Err(IdentityError::Ambiguous),
    };
    Ok(PeerIdentity { node, fingerprint: hex::encode(Sha256::digest(cert.as_ref())) })
}

/// The serial number of a certificate (e.g. a verified peer's), to compare
/// with [`crate::crl::LoadedCrls::revoked_serials`]: a gateway that reloads
/// its CRLs closes the open connections whose certificate is now revoked.
pub fn peer_serial(cert: &CertificateDer<'_>) -> Result<Serial, IdentityError> {
    let (_, parsed) = X509Certificate::from_der(cert.as_ref()).map_err(|e| IdentityError::Parse(e.to_string()))?;
    Ok(Serial::from_bytes(parsed.tbs_certificate.raw_serial()))
}
