//! Security properties over real mTLS: personal data at rest is sealed, a
//! lost or wrong store key stops the gateway with a clear error, revoked and
//! certificate-less clients are refused, and per-node limits hold under load
//! without one node starving the others.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use isx_core::wire::lookup_identifier::Kind;
use isx_core::wire::{LookupIdentifier, Operation, SearchRequest};
use isx_testkit::{Probe, Refusal, Topology, TopologySpec, probe, samples};
use tonic::Code;

const LIMIT: Duration = Duration::from_secs(20);

/// Every file under `dir`, recursively.
fn files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.push(path);
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copied_data_directory_discloses_no_personal_data() {
    let mut topo = Topology::start(TopologySpec::default_agencies()).await.unwrap();
    let alerts = [
        samples::foreign_fighter("de-police", &["fr-police", "it-police"]),
        samples::migrant_smuggling("it-police", &["fr-police", "europol", "frontex"]),
        samples::trafficking_victim("fr-police", &["de-police", "europol"]),
    ];
    for a in &alerts {
        topo.client(&a.origin).await.unwrap().publish(a.clone()).await.unwrap();
    }
    // Queued for an offline node too: the outbox holds copies.
    topo.stop_node("frontex").await.unwrap();
    let queued = samples::foreign_fighter("de-police", &["frontex"]);
    topo.client("de-police").await.unwrap().publish(queued).await.unwrap();
    for (node, a) in [("fr-police", &alerts[0]), ("europol", &alerts[1]), ("de-police", &alerts[2])] {
        assert!(topo.inbox(node).wait_for(&a.alert_id, LIMIT).await.unwrap().is_some());
    }
    // A lookup and an access request (with its justification) are stored too.
    let it = topo.client("it-police").await.unwrap();
    let id = LookupIdentifier { kind: Some(Kind::Plate("FG 512 ZT".into())) };
    let hits = it.lookup(vec![id], "investigation", "van seen near Bolzano").await.unwrap().hits;
    assert!(hits.is_empty(), "it-police is the holder of the smuggling alert");
    let de = topo.client("de-police").await.unwrap();
    let id = LookupIdentifier { kind: Some(Kind::Plate("FG 512 ZT".into())) };
    let hit = de.lookup(vec![id], "investigation", "van seen in Munich").await.unwrap().hits.remove(0);
    de.request_access(&hit.hit_id, "investigation", "the suspect may be in Munich").await.unwrap();

    for node in ["de-police", "fr-police", "it-police", "europol"] {
        topo.stop_node(node).await.unwrap();
    }
    topo.stop_gateway().await.unwrap();
    let pki = topo.pki_dir();
    let data: Vec<_> = files(topo.root()).into_iter().filter(|p| !p.starts_with(&pki)).collect();
    assert!(data.len() > 10, "the gateway's and the agencies' data: {data:?}");
    // Everything a person could be found by, in every spelling the alerts use.
    let needles = [
        "Brandt",
        "Lukas Emil",
        "C4J9X1R27",
        "B-KL 4471",
        "1994-03-17",
        "Istanbul",
        "Rinaldi",
        "CA48213KX",
        "FG 512 ZT",
        "Hadzic",
        "B0931177",
        "Popescu",
        "RX771203",
        "2010-08-09",
        "insulin",
        "Dumont",
        "19FV55021",
        // Free text typed by officers: lookup and access justifications.
        "seen near Bolzano",
        "seen in Munich",
        "may be in Munich",
    ];
    let mut bytes_scanned = 0;
    for file in &data {
        let bytes = std::fs::read(file).unwrap();
        bytes_scanned += bytes.len();
        for needle in needles {
            assert!(
                !bytes.windows(needle.len()).any(|w| w.eq_ignore_ascii_case(needle.as_bytes())),
                "{needle} is readable in {}",
                file.display()
            );
        }
    }
    assert!(bytes_scanned > 10_000, "scanned {bytes_scanned} bytes");
    // Nobody but the owner may read any of it: directories 0700, files 0600.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let stores = [topo.gateway_config().data_dir.clone(), topo.root().join("nodes")];
        for file in data.iter().filter(|f| stores.iter().any(|s| f.starts_with(s))) {
            let mode = std::fs::metadata(file).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode & 0o077, 0, "{} is {mode:o}", file.display());
        }
        for dir in [topo.gateway_config().data_dir.clone(), topo.root().join("nodes").join("de-police")] {
            let mode = std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o700, "{} is {mode:o}", dir.display());
        }
    }
    eprintln!(
        "at rest: {} files, {bytes_scanned} bytes scanned for {} identifiers: none found",
        data.len(),
        needles.len()
    );
    topo.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_or_wrong_store_key_stops_the_gateway_with_a_clear_error() {
    let mut topo = Topology::start(TopologySpec::default_agencies()).await.unwrap();
    let alert = samples::foreign_fighter("de-police", &["fr-police"]);
    topo.client("de-police").await.unwrap().publish(alert.clone()).await.unwrap();
    topo.stop_gateway().await.unwrap();
    let key = isx_store::key_path(&topo.pki_dir(), "gateway");
    let original = std::fs::read(&key).unwrap();

    std::fs::remove_file(&key).unwrap();
    let err = topo.start_gateway().await.unwrap_err().to_string();
    assert!(err.contains("gateway.store.key is missing"), "{err}");

    // Another valid key, written as isx writes keys (0600: a key others may
    // read is refused before it is tried).
    isx_store::write_private(&key, format!("{}\n", "ab".repeat(32)).as_bytes()).unwrap();
    let err = topo.start_gateway().await.unwrap_err().to_string();
    assert!(err.contains("gateway.store.key does not open this data directory"), "{err}");

    // With the right key everything is still there.
    std::fs::write(&key, original).unwrap();
    topo.start_gateway().await.unwrap();
    let resp = topo.client("de-police").await.unwrap().publish(alert).await.unwrap();
    assert!(resp.duplicate, "the stored alert survived");
    topo.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoked_and_certificate_less_clients_are_refused() {
    let mut spec = TopologySpec::default_agencies();
    let it = isx_core::NodeId::new("it-police").unwrap();
    spec.revoked = vec![it.clone()];
    spec.nodes.retain(|n| n.id != it);
    spec.nodes.push(isx_testkit::NodeSpec {
        run_mock: false,
        ..isx_testkit::NodeSpec::new("it-police", isx_core::NodeKind::National, "IT", "")
    });
    let topo = Topology::start(spec).await.unwrap();
    assert_eq!(
        probe(&topo.client_options("it-police").unwrap()).await.unwrap(),
        Probe::Handshake(Refusal::Alert(rustls::AlertDescription::CertificateRevoked)),
        "a revoked certificate is refused at the handshake"
    );
    assert_eq!(probe(&topo.client_options("de-police").unwrap()).await.unwrap(), Probe::Served, "others are served");

    // TLS 1.3 without a client certificate: the server ends the session.
    let pki = topo.pki_dir();
    let mut roots = rustls::RootCertStore::empty();
    use rustls_pki_types::pem::PemObject;
    for cert in rustls_pki_types::CertificateDer::pem_file_iter(pki.join("ca.crt")).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(topo.gateway_addr()).await.unwrap();
    let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
    let outcome = tokio::time::timeout(LIMIT, async {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut tls = connector.connect(name, tcp).await?;
        // The gateway's alert comes on the first read (TLS 1.3: the client's
        // handshake ends before the server has seen its empty certificate).
        let _ = tls.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").await;
        let mut buf = [0u8; 64];
        tls.read(&mut buf).await
    })
    .await
    .expect("bounded");
    let alert = outcome.as_ref().err().and_then(|e| e.get_ref()).and_then(|e| e.downcast_ref::<rustls::Error>());
    assert_eq!(
        alert,
        Some(&rustls::Error::AlertReceived(rustls::AlertDescription::CertificateRequired)),
        "a client without a certificate got {outcome:?}"
    );
    topo.shutdown().await;
}

/// The count in a rate-limit refusal record's "; N more refused since the
/// last record" (0 when the record stands for one refusal only).
/// The refusals an aggregate record counts ("N more refusals from …"); 0
/// for a record of one refusal.
fn more_refused(detail: &str) -> u64 {
    detail
        .split_once(" more refusals from ")
        .map(|(n, _)| n.parse().unwrap_or_else(|_| panic!("a count in {detail:?}")))
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_node_limits_hold_and_one_flooding_node_does_not_starve_the_others() {
    // A refill rate so small that no token comes back during the test (one
    // every 1000 s): each node has exactly BURST calls for the whole test, so
    // what is served and what is refused does not depend on the machine's speed.
    const BURST: u32 = 100;
    const FLOOD: usize = 300;
    let mut spec = TopologySpec::default_agencies();
    spec.limits.rate_per_node = 0.001;
    spec.limits.burst_per_node = BURST;
    spec.limits.max_streams_per_node = 2;
    spec.limits.max_queue_per_node = 3;
    // it-police floods. It runs no mock agency, so the flood alone takes its tokens.
    spec.nodes.iter_mut().filter(|n| n.id.as_str() == "it-police").for_each(|n| n.run_mock = false);
    let (events, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let mut topo = Topology::start_with_events(spec, Some(events)).await.unwrap();

    // it-police sends FLOOD lookups at once: BURST are served, the rest refused.
    let flooder = topo.client("it-police").await.unwrap();
    let lookup = |c: isx_node::Client| async move {
        let id = LookupIdentifier { kind: Some(Kind::Plate("XX 0000".into())) };
        c.lookup(vec![id], "flood", "flood").await.map(|_| ()).map_err(|s| s.code())
    };
    let flood = tokio::spawn({
        let flooder = flooder.clone();
        async move {
            let mut tasks = tokio::task::JoinSet::new();
            for _ in 0..FLOOD {
                tasks.spawn(lookup(flooder.clone()));
            }
            let mut codes = Vec::new();
            while let Some(r) = tasks.join_next().await {
                codes.push(r.unwrap());
            }
            codes
        }
    });
    // Meanwhile de-police publishes at its own pace (each delivered before the
    // next, so fr-police's small queue never fills): every publish is accepted.
    let de = topo.client("de-police").await.unwrap();
    let mut sent = Vec::new();
    for _ in 0..20 {
        let a = samples::foreign_fighter("de-police", &["fr-police"]);
        de.publish(a.clone()).await.expect("the well-behaved node is not starved");
        assert!(topo.inbox("fr-police").wait_for(&a.alert_id, LIMIT).await.unwrap().is_some());
        sent.push(a.alert_id);
    }
    let codes = flood.await.unwrap();
    let refused = codes.iter().filter(|c| **c == Err(Code::ResourceExhausted)).count();
    let ok = codes.iter().filter(|c| c.is_ok()).count();
    eprintln!("limits: the flooding node got {ok} answers and {refused} RESOURCE_EXHAUSTED of {}", codes.len());
    let other: Vec<_> = codes.iter().filter(|c| !matches!(c, Ok(()) | Err(Code::ResourceExhausted))).collect();
    assert!(other.is_empty(), "only served or rate-limited: {other:?}");
    assert_eq!((ok, refused), (BURST as usize, FLOOD - BURST as usize), "exactly the burst is served");
    for id in &sent {
        assert!(topo.inbox("fr-police").wait_for(id, LIMIT).await.unwrap().is_some());
    }

    // The first refusals of each second are recorded one by one, the rest
    // counted and written as one aggregate once that second has passed. The
    // aggregate comes from a background ticker, so wait for it, bounded.
    let deadline = tokio::time::Instant::now() + LIMIT;
    let (records, counted, details) = loop {
        let denials = topo
            .audit_records(SearchRequest {
                node: "it-police".into(),
                operation: Operation::Denial as i32,
                ..Default::default()
            })
            .await
            .unwrap();
        assert!(denials.iter().all(|d| d.detail.contains("limits.rate_per_node")), "{denials:?}");
        // An aggregate record stands for the refusals it counts, not for one more.
        let counted: u64 = denials.iter().map(|d| more_refused(&d.detail)).sum();
        let singles = denials.iter().filter(|d| more_refused(&d.detail) == 0).count() as u64;
        let details: Vec<String> = denials.iter().map(|d| d.detail.clone()).collect();
        if singles + counted >= refused as u64 || tokio::time::Instant::now() > deadline {
            break (singles, counted, details);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    eprintln!("limits: {} denial records for {refused} refusals", details.len());
    assert_eq!(records + counted, refused as u64, "every refusal is accounted for: {details:?}");
    assert!(counted > 0 && details.len() < refused, "refusals are aggregated: {details:?}");
    assert_eq!(
        (records, details.len()),
        (10, 11),
        "limits.refusal_records_per_second (10) one by one, then one aggregate: {details:?}"
    );
    assert_eq!(lookup(flooder.clone()).await, Err(Code::ResourceExhausted), "no token came back");

    // Streams: the mock holds one; one more is allowed, the third refused.
    let fr = topo.client("fr-police").await.unwrap();
    let _second = fr.subscribe(u64::MAX - 1).await.unwrap();
    let third = fr.subscribe(u64::MAX - 1).await.unwrap_err();
    assert_eq!(third.code(), Code::ResourceExhausted);
    assert!(third.message().contains("max_streams_per_node"), "{}", third.message());

    // Queue: frontex is offline; three events wait, the fourth publish is refused, nothing is lost.
    topo.stop_node("frontex").await.unwrap();
    let mut waiting = Vec::new();
    for _ in 0..3 {
        let a = samples::migrant_smuggling("de-police", &["frontex"]);
        de.publish(a.clone()).await.unwrap();
        waiting.push(a.alert_id);
    }
    // The fourth finds frontex's queue full: it is accepted, and the receipt
    // names frontex as not served (one node's queue blocks no one else).
    let refused = samples::migrant_smuggling("de-police", &["frontex"]);
    let receipt = de.publish(refused.clone()).await.unwrap().receipt.unwrap();
    assert_eq!(receipt.recipients.len(), 1);
    assert_eq!(receipt.recipients[0].outcome(), isx_core::wire::RecipientOutcome::QueueFull, "{receipt:?}");
    // Once frontex has received and acknowledged them, publishing works again.
    topo.start_node("frontex").await.unwrap();
    tokio::time::timeout(LIMIT, async {
        while !waiting.is_empty() {
            if let Some((node, isx_node::NodeEvent::Delivered { record, .. })) = rx.recv().await
                && node.as_str() == "frontex"
            {
                waiting.retain(|id| id != record.alert_id());
            }
        }
    })
    .await
    .expect("frontex drains its queue");
    let again = samples::migrant_smuggling("de-police", &["frontex"]);
    let receipt = de.publish(again.clone()).await.expect("the queue has room again").receipt.unwrap();
    assert_eq!(receipt.recipients[0].outcome(), isx_core::wire::RecipientOutcome::Queued);
    let last = topo.inbox("frontex");
    assert!(last.wait_for(&again.alert_id, LIMIT).await.unwrap().is_some());
    assert!(last.get(&refused.alert_id).unwrap().is_none(), "nothing was queued for the full recipient");
    topo.shutdown().await;
}
