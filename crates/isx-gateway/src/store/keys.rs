//! The key layouts of the gateway's trees.

/// `node ‖ 0x00 ‖ seq` (big-endian): one event for one node, in sequence order.
pub(crate) fn outbox_key(node: &str, seq: u64) -> Vec<u8> {
    let mut key = Vec::with_capacity(node.len() + 9);
    key.extend_from_slice(node.as_bytes());
    key.push(0);
    key.extend_from_slice(&seq.to_be_bytes());
    key
}

/// The sequence number at the end of an outbox key.
pub(crate) fn seq_of(key: &[u8]) -> u64 {
    let tail: [u8; 8] = key[key.len() - 8..].try_into().expect("outbox keys end in 8 bytes");
    u64::from_be_bytes(tail)
}

/// The node an outbox key belongs to.
pub(crate) fn node_of(key: &[u8]) -> &[u8] {
    key.split(|b| *b == 0).next().unwrap_or_default()
}

/// `expires_at_ms ‖ alert_id`: the rows that expire with one alert.
pub(crate) fn expiry_key(expires_ms: u64, alert_id: &str) -> Vec<u8> {
    let mut key = expires_ms.to_be_bytes().to_vec();
    key.extend_from_slice(alert_id.as_bytes());
    key
}

/// `pseudonym ‖ 0x00 ‖ alert_id`: one identifier of one alert in the lookup index.
pub(crate) fn lookup_key(pseudonym: &str, alert_id: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(pseudonym.len() + 1 + alert_id.len());
    key.extend_from_slice(pseudonym.as_bytes());
    key.push(0);
    key.extend_from_slice(alert_id.as_bytes());
    key
}

/// `h ‖ hit_id`: a hit flag.
pub(crate) fn hit_key(hit_id: &str) -> Vec<u8> {
    [b"h", hit_id.as_bytes()].concat()
}

/// `a ‖ alert_id ‖ 0x00 ‖ hit_id`: the hits of one alert, to drop them with it.
pub(crate) fn hit_by_alert_key(alert_id: &str, hit_id: &str) -> Vec<u8> {
    [b"a", alert_id.as_bytes(), b"\0", hit_id.as_bytes()].concat()
}

/// `r ‖ request_id`: an access request.
pub(crate) fn request_key(request_id: &str) -> Vec<u8> {
    [b"r", request_id.as_bytes()].concat()
}

/// `n ‖ node ‖ 0x00 ‖ request_id`: a request its requester or holder takes part in.
pub(crate) fn node_key(node: &str, request_id: &str) -> Vec<u8> {
    [b"n", node.as_bytes(), b"\0", request_id.as_bytes()].concat()
}

/// `d ‖ deadline_ms ‖ request_id`: a pending request by deadline.
pub(crate) fn due_key(deadline_ms: u64, request_id: &str) -> Vec<u8> {
    [b"d".as_slice(), &deadline_ms.to_be_bytes(), request_id.as_bytes()].concat()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outbox_keys_sort_by_node_then_sequence() {
        let (a, b, c) = (outbox_key("fr", 2), outbox_key("fr", 10), outbox_key("fr-x", 1));
        assert!(a < b && b < c, "seq is big-endian, and a node's keys do not interleave with a longer id's");
        assert_eq!(seq_of(&b), 10);
        assert_eq!(node_of(&c), b"fr-x");
    }
}
