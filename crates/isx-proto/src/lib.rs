//! Generated code for the isx wire API (`proto/isx/v1`, package `isx.v1`).
//!
//! # Layout
//! - [`v1`]: prost messages and the tonic clients and servers for
//!   `isx.v1.Exchange` and `isx.v1.Audit` (the gateway's API) and
//!   `isx.v1.Inspect` (a mock agency's local, read-only inspect service).
//! - [`FILE_DESCRIPTOR_SET`]: the encoded descriptors of the gateway's API,
//!   served by its gRPC reflection.
//! - [`descriptor_pool`]: the same descriptors, for the canonical protobuf JSON mapping.
//!
//! This crate holds no logic: validation, redaction and conversions live in `isx-core`.
#![forbid(unsafe_code)]

use std::sync::OnceLock;

use prost_reflect::DescriptorPool;

/// Messages and services of package `isx.v1`.
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod v1 {
    tonic::include_proto!("isx.v1");
}

/// The encoded `FileDescriptorSet` of the gateway's `.proto` files in
/// `proto/` (all but `inspect.proto`, which only a mock agency serves), with imports.
pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/isx_descriptor.bin"));

/// The descriptors of the wire API, decoded once.
pub fn descriptor_pool() -> &'static DescriptorPool {
    static POOL: OnceLock<DescriptorPool> = OnceLock::new();
    POOL.get_or_init(|| {
        DescriptorPool::decode(FILE_DESCRIPTOR_SET).expect("descriptor set compiled by build.rs decodes")
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn pool_knows_the_alert_message() {
        let pool = super::descriptor_pool();
        assert!(pool.get_message_by_name("isx.v1.Alert").is_some());
        assert!(pool.get_service_by_name("isx.v1.Exchange").is_some());
        // The gateway's reflection does not list the agency's local service.
        assert!(pool.get_service_by_name("isx.v1.Inspect").is_none());
    }
}
