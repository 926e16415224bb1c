//! `isx demo` end to end: the narrated showcase passes and says what a
//! policy officer needs to read.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_narrates_the_showcase_and_verifies_the_audit_log() {
    let mut out = Vec::new();
    let report = isx_testkit::demo::run(&mut out).await.expect("the demo runs");
    let text = String::from_utf8(out).unwrap();
    assert!(report.ok(), "{text}");
    assert!(report.checked >= 50, "{text}");
    for needle in [
        "1.  The Bundeskriminalamt",
        "frontex    redacted  frontex-depersonalised: Frontex always receives alerts de-personalised",
        "hit: trafficking-victim held by fr-police",
        "granted: frontex will receive it redacted",
        "Who holds what now",
        "Verified as an auditor would",
        "Cosigned by witness (C2SP tlog-witness",
        "isx scenario run deploy/local/scenarios/*.toml",
        "OK: ",
    ] {
        assert!(text.contains(needle), "missing {needle:?} in:\n{text}");
    }
    // Personal data never appears in the narration: only levels and reasons.
    for needle in ["Brandt", "C4J9X1R27", "Popescu", "RX771203"] {
        assert!(!text.contains(needle), "{needle} printed by the demo");
    }
}
