use super::*;
use hookmesh_api::config::SecretBytes;
use http::HeaderValue;

const TOL: u64 = 300;

fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in pairs {
        map.append(
            *name,
            HeaderValue::from_str(value).expect("test header value"),
        );
    }
    map
}

fn key(bytes: &[u8]) -> SecretBytes {
    SecretBytes(bytes.to_vec())
}

fn invalid(r: Result<(), Failure>) -> bool {
    matches!(r, Err(Failure::Invalid(_)))
}

// --- Standard Webhooks ---------------------------------------------------------------------
// Test vector from the Standard Webhooks reference libraries' test suites.

const SW_SECRET_B64: &str = "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"; // whsec_ stripped
const SW_ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
const SW_TS: i64 = 1_614_265_330;
const SW_BODY: &[u8] = br#"{"test": 2432232314}"#;
const SW_SIG: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

fn sw_key() -> Vec<u8> {
    BASE64
        .decode(SW_SECRET_B64)
        .expect("vector secret is base64")
}

fn sw() -> Verifier {
    Verifier::StandardWebhooks {
        key: key(&sw_key()),
    }
}

fn sw_headers(id: &str, ts: &str, sig: &str) -> HeaderMap {
    headers(&[
        ("webhook-id", id),
        ("webhook-timestamp", ts),
        ("webhook-signature", sig),
    ])
}

fn sw_check(h: &HeaderMap, body: &[u8], now: i64) -> Result<(), Failure> {
    verify(&sw(), TOL, h, body, now)
}

#[test]
fn standard_webhooks_spec_vector() {
    let h = sw_headers(SW_ID, "1614265330", SW_SIG);
    assert_eq!(sw_check(&h, SW_BODY, SW_TS), Ok(()));
}

#[test]
fn signer_reproduces_spec_vector_and_round_trips() {
    assert_eq!(sw::sign(&sw_key(), SW_ID, SW_TS, SW_BODY), SW_SIG);

    let k = b"another key, of an odd length!";
    let body = b"{\"type\":\"order.created\"}";
    let sig = sw::sign(k, "msg_1", 1_700_000_000, body);
    let h = sw_headers("msg_1", "1700000000", &sig);
    let v = Verifier::StandardWebhooks { key: key(k) };
    assert_eq!(verify(&v, TOL, &h, body, 1_700_000_000), Ok(()));
    assert!(invalid(verify(&v, TOL, &h, b"{}", 1_700_000_000)));
}

#[test]
fn standard_webhooks_rejects_wrong_secret_and_tampering() {
    let h = sw_headers(SW_ID, "1614265330", SW_SIG);
    let other = Verifier::StandardWebhooks {
        key: key(b"not the secret"),
    };
    assert!(invalid(verify(&other, TOL, &h, SW_BODY, SW_TS)));
    assert!(invalid(sw_check(&h, br#"{"test": 2432232315}"#, SW_TS)));
    // id and timestamp are signed too.
    let h = sw_headers("msg_other", "1614265330", SW_SIG);
    assert!(invalid(sw_check(&h, SW_BODY, SW_TS)));
    let h = sw_headers(SW_ID, "1614265331", SW_SIG);
    assert!(invalid(sw_check(&h, SW_BODY, SW_TS)));
}

#[test]
fn standard_webhooks_tolerance_boundaries() {
    let h = sw_headers(SW_ID, "1614265330", SW_SIG);
    let tol = TOL as i64;
    assert_eq!(sw_check(&h, SW_BODY, SW_TS + tol), Ok(()));
    assert_eq!(sw_check(&h, SW_BODY, SW_TS - tol), Ok(()));
    assert_eq!(
        sw_check(&h, SW_BODY, SW_TS + tol + 1),
        Err(Failure::TimestampOutOfTolerance {
            timestamp: SW_TS,
            now: SW_TS + tol + 1
        })
    );
    // The message is from the future.
    assert_eq!(
        sw_check(&h, SW_BODY, SW_TS - tol - 1),
        Err(Failure::TimestampOutOfTolerance {
            timestamp: SW_TS,
            now: SW_TS - tol - 1
        })
    );
    assert_eq!(verify(&sw(), 0, &h, SW_BODY, SW_TS), Ok(()));
    // Extreme clocks must not overflow.
    assert!(matches!(
        verify(&sw(), u64::MAX, &h, SW_BODY, i64::MIN),
        Ok(())
    ));
    assert!(matches!(
        sw_check(&h, SW_BODY, i64::MIN),
        Err(Failure::TimestampOutOfTolerance { .. })
    ));
}

#[test]
fn standard_webhooks_forged_signature_with_stale_timestamp_is_invalid_not_stale() {
    let h = sw_headers(
        SW_ID,
        "1614265330",
        "v1,AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
    );
    assert!(invalid(sw_check(&h, SW_BODY, SW_TS + 10_000)));
}

#[test]
fn standard_webhooks_missing_headers() {
    let ts = "1614265330";
    let cases = [
        (
            "webhook-id",
            headers(&[("webhook-timestamp", ts), ("webhook-signature", SW_SIG)]),
        ),
        (
            "webhook-timestamp",
            headers(&[("webhook-id", SW_ID), ("webhook-signature", SW_SIG)]),
        ),
        (
            "webhook-signature",
            headers(&[("webhook-id", SW_ID), ("webhook-timestamp", ts)]),
        ),
    ];
    for (name, h) in cases {
        let got = sw_check(&h, SW_BODY, SW_TS);
        assert_eq!(got, Err(Failure::Missing(name.to_string())));
        assert_eq!(got.err().map(|f| f.code()), Some("SIGNATURE_MISSING"));
    }
    assert_eq!(
        sw_check(&HeaderMap::new(), SW_BODY, SW_TS),
        Err(Failure::Missing("webhook-id".into()))
    );
}

#[test]
fn standard_webhooks_multiple_signatures_and_versions() {
    let with = |sig: &str| sw_check(&sw_headers(SW_ID, "1614265330", sig), SW_BODY, SW_TS);
    let wrong = "v1,AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";
    // Key rotation: the sender signs with old and new keys; either may be ours.
    assert_eq!(with(&format!("{wrong} {SW_SIG}")), Ok(()));
    assert_eq!(with(&format!("{SW_SIG} {wrong}")), Ok(()));
    assert_eq!(
        with(&format!("v1a,c29tZWJ5dGVz v1,!!notbase64!! {SW_SIG}")),
        Ok(())
    );
    // Extra whitespace between and around entries.
    assert_eq!(with(&format!("  {wrong}   {SW_SIG}  ")), Ok(()));
    // Without padding.
    assert_eq!(with(SW_SIG.trim_end_matches('=')), Ok(()));
    // v1a is another scheme's signature over the same bytes; it must not be taken as v1.
    assert!(invalid(with(&SW_SIG.replacen("v1,", "v1a,", 1))));
    assert!(invalid(with(&SW_SIG.replacen("v1,", "v2,", 1))));
    assert!(invalid(with(wrong)));
}

#[test]
fn standard_webhooks_malformed_headers() {
    let with_sig = |sig: &str| sw_check(&sw_headers(SW_ID, "1614265330", sig), SW_BODY, SW_TS);
    for sig in [
        "v1,!!!",
        "v1,",
        "garbage",
        "v1",
        ",",
        "v1;g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
    ] {
        assert!(invalid(with_sig(sig)), "{sig:?}");
    }
    let with_ts = |ts: &str| sw_check(&sw_headers(SW_ID, ts, SW_SIG), SW_BODY, SW_TS);
    for ts in [
        "abc",
        "-1614265330",
        "+1614265330",
        "1614265330.0",
        "0x60",
        "99999999999999999999",
        "1614265330 1",
    ] {
        assert!(invalid(with_ts(ts)), "{ts:?}");
    }
    // Empty after trimming.
    assert!(invalid(with_ts("   ")));
    // Surrounding whitespace is not part of the value.
    assert_eq!(with_ts(" 1614265330 "), Ok(()));
}

#[test]
fn non_ascii_and_repeated_headers_are_invalid() {
    let mut h = sw_headers(SW_ID, "1614265330", SW_SIG);
    h.insert(
        "webhook-id",
        HeaderValue::from_bytes(b"msg_\xff").expect("obs-text is a legal header byte"),
    );
    assert!(invalid(sw_check(&h, SW_BODY, SW_TS)));

    let mut h = sw_headers(SW_ID, "1614265330", SW_SIG);
    h.append("webhook-signature", HeaderValue::from_static("v1,AAAA"));
    assert!(invalid(sw_check(&h, SW_BODY, SW_TS)));
}

// --- Stripe --------------------------------------------------------------------------------
// No published vector with a secret exists; this one was computed independently with
// Python's hmac module: hmac.new(secret, b"1700000000." + body, sha256).hexdigest().

const ST_SECRET: &[u8] = b"whsec_hookmesh_stripe_test";
const ST_BODY: &[u8] = br#"{"id":"evt_1","object":"event","type":"payment_intent.succeeded"}"#;
const ST_TS: i64 = 1_700_000_000;
const ST_SIG: &str = "ce50d93da7e201947c3c1340ea31aac14f05e5c987231c2afe4268a77cef17b8";
const ZERO_HEX: &str = "0000000000000000000000000000000000000000000000000000000000000000";

fn stripe_check(header: &str, body: &[u8], now: i64) -> Result<(), Failure> {
    let v = Verifier::Stripe {
        key: key(ST_SECRET),
    };
    verify(
        &v,
        TOL,
        &headers(&[("stripe-signature", header)]),
        body,
        now,
    )
}

#[test]
fn stripe_vector_and_variants() {
    assert_eq!(
        stripe_check(&format!("t=1700000000,v1={ST_SIG}"), ST_BODY, ST_TS),
        Ok(())
    );
    // Order does not matter; v0 and unknown schemes are ignored; one of several v1 suffices.
    let h = format!("v0={ZERO_HEX},v1={ZERO_HEX},t=1700000000,v1={ST_SIG},v9=zz");
    assert_eq!(stripe_check(&h, ST_BODY, ST_TS), Ok(()));
    assert_eq!(
        stripe_check(&format!(" t=1700000000 , v1= {ST_SIG} "), ST_BODY, ST_TS),
        Ok(())
    );
    assert_eq!(
        stripe_check(
            &format!("t=1700000000,v1={}", ST_SIG.to_uppercase()),
            ST_BODY,
            ST_TS
        ),
        Ok(())
    );
    // A malformed v1 next to a good one does not spoil it.
    assert_eq!(
        stripe_check(&format!("t=1700000000,v1=xyz,v1={ST_SIG}"), ST_BODY, ST_TS),
        Ok(())
    );
}

#[test]
fn stripe_rejections() {
    let good = format!("t=1700000000,v1={ST_SIG}");
    let other = Verifier::Stripe {
        key: key(b"whsec_other"),
    };
    let h = headers(&[("stripe-signature", &good)]);
    assert!(invalid(verify(&other, TOL, &h, ST_BODY, ST_TS)));
    assert!(invalid(stripe_check(&good, b"{}", ST_TS)));
    // The timestamp is signed.
    assert!(invalid(stripe_check(
        &format!("t=1700000001,v1={ST_SIG}"),
        ST_BODY,
        ST_TS
    )));
    for h in [
        format!("v1={ST_SIG}"),
        "t=1700000000".to_string(),
        format!("t=1700000000,v0={ST_SIG}"),
        "t=1700000000,v1=nothex".to_string(),
        format!("t=abc,v1={ST_SIG}"),
        format!("t=,v1={ST_SIG}"),
        format!("t=1700000000,t=1700000000,v1={ST_SIG}"),
        format!("t=99999999999999999999,v1={ST_SIG}"),
        "garbage".to_string(),
        ",,,".to_string(),
    ] {
        assert!(invalid(stripe_check(&h, ST_BODY, ST_TS)), "{h:?}");
    }
    assert_eq!(
        verify(&other, TOL, &HeaderMap::new(), ST_BODY, ST_TS),
        Err(Failure::Missing("Stripe-Signature".into()))
    );
}

#[test]
fn stripe_tolerance_boundaries() {
    let h = format!("t=1700000000,v1={ST_SIG}");
    let tol = TOL as i64;
    assert_eq!(stripe_check(&h, ST_BODY, ST_TS + tol), Ok(()));
    assert_eq!(stripe_check(&h, ST_BODY, ST_TS - tol), Ok(()));
    for now in [ST_TS + tol + 1, ST_TS - tol - 1] {
        assert_eq!(
            stripe_check(&h, ST_BODY, now),
            Err(Failure::TimestampOutOfTolerance {
                timestamp: ST_TS,
                now
            })
        );
    }
}

// --- GitHub --------------------------------------------------------------------------------
// Vector from GitHub's "Validating webhook deliveries" documentation.

const GH_SECRET: &[u8] = b"It's a Secret to Everybody";
const GH_BODY: &[u8] = b"Hello, World!";
const GH_SIG: &str = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";

fn github_check(header: &str, secret: &[u8], body: &[u8]) -> Result<(), Failure> {
    let v = Verifier::Github { key: key(secret) };
    // No timestamp: `now` is irrelevant.
    verify(
        &v,
        TOL,
        &headers(&[("x-hub-signature-256", header)]),
        body,
        i64::MAX,
    )
}

#[test]
fn github_docs_vector() {
    assert_eq!(github_check(GH_SIG, GH_SECRET, GH_BODY), Ok(()));
    assert_eq!(
        github_check(&format!("  {GH_SIG}\t"), GH_SECRET, GH_BODY),
        Ok(())
    );
    let upper = format!("sha256={}", GH_SIG["sha256=".len()..].to_uppercase());
    assert_eq!(github_check(&upper, GH_SECRET, GH_BODY), Ok(()));
}

#[test]
fn github_rejections() {
    assert!(invalid(github_check(
        GH_SIG,
        b"It's a Secret to Everybody!",
        GH_BODY
    )));
    assert!(invalid(github_check(GH_SIG, GH_SECRET, b"Hello, World?")));
    let bare = &GH_SIG["sha256=".len()..];
    for h in [
        bare.to_string(),
        format!("sha1={bare}"),
        format!("SHA256={bare}"),
        "sha256=".to_string(),
        "sha256=zz".to_string(),
        format!("sha256={}", &bare[1..]),
        format!("sha256={bare}00"),
    ] {
        assert!(invalid(github_check(&h, GH_SECRET, GH_BODY)), "{h:?}");
    }
    let v = Verifier::Github {
        key: key(GH_SECRET),
    };
    // The legacy SHA-1 header alone is not enough.
    let h = headers(&[("x-hub-signature", "sha1=0000")]);
    assert_eq!(
        verify(&v, TOL, &h, GH_BODY, 0),
        Err(Failure::Missing("X-Hub-Signature-256".into()))
    );
}

// --- Shopify -------------------------------------------------------------------------------
// Shopify documents the scheme but publishes no secret/body/signature triple; this vector
// was computed with Python: base64(hmac.new(secret, body, sha256).digest()).

const SH_SECRET: &[u8] = b"hookmesh-shopify-secret";
const SH_BODY: &[u8] = br#"{"id":820982911946154508,"email":"jon@example.com"}"#;
const SH_SIG: &str = "rLUSh6VONbC8pm8XMDkis0z46BLdSMKq/AbrmWwg8HM=";

fn shopify_check(header: &str, secret: &[u8], body: &[u8]) -> Result<(), Failure> {
    let v = Verifier::Shopify { key: key(secret) };
    verify(
        &v,
        TOL,
        &headers(&[("x-shopify-hmac-sha256", header)]),
        body,
        0,
    )
}

#[test]
fn shopify_vector_and_rejections() {
    assert_eq!(shopify_check(SH_SIG, SH_SECRET, SH_BODY), Ok(()));
    assert_eq!(
        shopify_check(&format!(" {SH_SIG} "), SH_SECRET, SH_BODY),
        Ok(())
    );
    assert!(invalid(shopify_check(SH_SIG, b"other", SH_BODY)));
    assert!(invalid(shopify_check(SH_SIG, SH_SECRET, b"{}")));
    for h in [
        "not base64!",
        "rLUSh6VONbC8pm8XMDkis0z46BLdSMKq-AbrmWwg8HM=",
        "AAAA",
        "=",
    ] {
        assert!(invalid(shopify_check(h, SH_SECRET, SH_BODY)), "{h:?}");
    }
    let v = Verifier::Shopify {
        key: key(SH_SECRET),
    };
    assert_eq!(
        verify(&v, TOL, &HeaderMap::new(), SH_BODY, 0),
        Err(Failure::Missing("X-Shopify-Hmac-Sha256".into()))
    );
}

// --- Slack ---------------------------------------------------------------------------------
// Vector from Slack's "Verifying requests from Slack" documentation.

const SL_SECRET: &[u8] = b"8f742231b10e8888abcd99yyyzzz85a5";
const SL_TS: i64 = 1_531_420_618;
const SL_BODY: &[u8] = b"token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c";
const SL_SIG: &str = "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503";

fn slack_check(ts: &str, sig: &str, body: &[u8], now: i64) -> Result<(), Failure> {
    let v = Verifier::Slack {
        key: key(SL_SECRET),
    };
    let h = headers(&[
        ("x-slack-request-timestamp", ts),
        ("x-slack-signature", sig),
    ]);
    verify(&v, TOL, &h, body, now)
}

#[test]
fn slack_docs_vector() {
    assert_eq!(slack_check("1531420618", SL_SIG, SL_BODY, SL_TS), Ok(()));
    assert_eq!(
        slack_check(" 1531420618 ", &format!(" {SL_SIG} "), SL_BODY, SL_TS),
        Ok(())
    );
}

#[test]
fn slack_rejections_and_tolerance() {
    let tol = TOL as i64;
    assert_eq!(
        slack_check("1531420618", SL_SIG, SL_BODY, SL_TS + tol),
        Ok(())
    );
    assert_eq!(
        slack_check("1531420618", SL_SIG, SL_BODY, SL_TS - tol),
        Ok(())
    );
    for now in [SL_TS + tol + 1, SL_TS - tol - 1] {
        assert_eq!(
            slack_check("1531420618", SL_SIG, SL_BODY, now),
            Err(Failure::TimestampOutOfTolerance {
                timestamp: SL_TS,
                now
            })
        );
    }
    assert!(invalid(slack_check("1531420619", SL_SIG, SL_BODY, SL_TS)));
    assert!(invalid(slack_check(
        "1531420618",
        SL_SIG,
        b"token=x",
        SL_TS
    )));
    let bare = &SL_SIG["v0=".len()..];
    for sig in [
        bare.to_string(),
        format!("v1={bare}"),
        "v0=zz".to_string(),
        "v0=".to_string(),
    ] {
        assert!(
            invalid(slack_check("1531420618", &sig, SL_BODY, SL_TS)),
            "{sig:?}"
        );
    }
    assert!(invalid(slack_check("1531420618.5", SL_SIG, SL_BODY, SL_TS)));

    let v = Verifier::Slack {
        key: key(SL_SECRET),
    };
    let only_sig = headers(&[("x-slack-signature", SL_SIG)]);
    assert_eq!(
        verify(&v, TOL, &only_sig, SL_BODY, SL_TS),
        Err(Failure::Missing("X-Slack-Request-Timestamp".into()))
    );
    let only_ts = headers(&[("x-slack-request-timestamp", "1531420618")]);
    assert_eq!(
        verify(&v, TOL, &only_ts, SL_BODY, SL_TS),
        Err(Failure::Missing("X-Slack-Signature".into()))
    );
    let other = Verifier::Slack {
        key: key(b"8f742231b10e8888abcd99yyyzzz85a6"),
    };
    let h = headers(&[
        ("x-slack-request-timestamp", "1531420618"),
        ("x-slack-signature", SL_SIG),
    ]);
    assert!(invalid(verify(&other, TOL, &h, SL_BODY, SL_TS)));
}

// --- generic HMAC --------------------------------------------------------------------------
// Vectors computed with Python's hmac module (see each constant).

const GEN_SECRET: &[u8] = b"generic-secret";
const GEN_BODY: &[u8] = br#"{"event":"ping"}"#;
/// hmac.new(GEN_SECRET, GEN_BODY, sha256).hexdigest()
const GEN_SHA256_HEX: &str = "adbb938347115a1b87cab58c7bc6980054aec92d3d79c686a74f97cd58a14cfd";
/// base64(hmac.new(GEN_SECRET, b"1700000000:" + GEN_BODY, sha512).digest())
const GEN_SHA512_B64: &str =
    "7Llw2hZFfCljPGd41zbprmZnB8AfN5Dns4ru8rf4wGG9pxmnYzOV5gOeUWCuMwIcozUgZFry2HdSbU0yb8RI3g==";

fn hex_cfg() -> Verifier {
    Verifier::Hmac(GenericHmacConfig {
        key: key(GEN_SECRET),
        header: "x-signature".into(),
        encoding: SignatureEncoding::Hex,
        prefix: "sha256=".into(),
        algorithm: HmacAlgorithm::Sha256,
        timestamp_header: None,
        signed_content: vec![TemplatePart::Body],
    })
}

fn b64_ts_cfg() -> Verifier {
    Verifier::Hmac(GenericHmacConfig {
        key: key(GEN_SECRET),
        header: "x-sig".into(),
        encoding: SignatureEncoding::Base64,
        prefix: String::new(),
        algorithm: HmacAlgorithm::Sha512,
        timestamp_header: Some("x-ts".into()),
        signed_content: vec![
            TemplatePart::Timestamp,
            TemplatePart::Literal(":".into()),
            TemplatePart::Body,
        ],
    })
}

#[test]
fn generic_sha256_hex_with_prefix() {
    let check = |sig: &str, body: &[u8]| {
        verify(&hex_cfg(), TOL, &headers(&[("x-signature", sig)]), body, 0)
    };
    assert_eq!(check(&format!("sha256={GEN_SHA256_HEX}"), GEN_BODY), Ok(()));
    assert_eq!(
        check(
            &format!("sha256={}", GEN_SHA256_HEX.to_uppercase()),
            GEN_BODY
        ),
        Ok(())
    );
    assert!(invalid(check(GEN_SHA256_HEX, GEN_BODY)));
    assert!(invalid(check(&format!("sha256={GEN_SHA256_HEX}"), b"{}")));
    assert!(invalid(check("sha256=not-hex", GEN_BODY)));
    assert_eq!(
        verify(&hex_cfg(), TOL, &HeaderMap::new(), GEN_BODY, 0),
        Err(Failure::Missing("x-signature".into()))
    );
}

#[test]
fn generic_sha512_base64_with_timestamp() {
    let check = |ts: &str, sig: &str, now: i64| {
        verify(
            &b64_ts_cfg(),
            TOL,
            &headers(&[("x-ts", ts), ("x-sig", sig)]),
            GEN_BODY,
            now,
        )
    };
    let now = 1_700_000_000;
    assert_eq!(check("1700000000", GEN_SHA512_B64, now), Ok(()));
    assert_eq!(check("1700000000", GEN_SHA512_B64, now + 300), Ok(()));
    assert_eq!(
        check("1700000000", GEN_SHA512_B64, now + 301),
        Err(Failure::TimestampOutOfTolerance {
            timestamp: now,
            now: now + 301
        })
    );
    assert_eq!(
        check("1700000000", GEN_SHA512_B64, now - 301),
        Err(Failure::TimestampOutOfTolerance {
            timestamp: now,
            now: now - 301
        })
    );
    assert!(invalid(check("1700000001", GEN_SHA512_B64, now)));
    assert!(invalid(check("soon", GEN_SHA512_B64, now)));
    assert!(invalid(check("1700000000", "%%%", now)));
    let h = headers(&[("x-sig", GEN_SHA512_B64)]);
    assert_eq!(
        verify(&b64_ts_cfg(), TOL, &h, GEN_BODY, now),
        Err(Failure::Missing("x-ts".into()))
    );

    // The same bytes under SHA-256 must not pass as SHA-512.
    let Verifier::Hmac(mut cfg) = b64_ts_cfg() else {
        unreachable!()
    };
    cfg.algorithm = HmacAlgorithm::Sha256;
    let h = headers(&[("x-ts", "1700000000"), ("x-sig", GEN_SHA512_B64)]);
    assert!(invalid(verify(
        &Verifier::Hmac(cfg),
        TOL,
        &h,
        GEN_BODY,
        now
    )));
}

#[test]
fn generic_template_timestamp_without_header_is_refused() {
    let Verifier::Hmac(mut cfg) = b64_ts_cfg() else {
        unreachable!()
    };
    cfg.timestamp_header = None;
    let h = headers(&[("x-sig", GEN_SHA512_B64)]);
    assert!(invalid(verify(
        &Verifier::Hmac(cfg),
        TOL,
        &h,
        GEN_BODY,
        1_700_000_000
    )));
}

// --- cross-cutting -------------------------------------------------------------------------

#[test]
fn none_accepts_anything() {
    assert_eq!(
        verify(&Verifier::None, 0, &HeaderMap::new(), b"", i64::MIN),
        Ok(())
    );
}

#[test]
fn codes() {
    assert_eq!(Failure::Missing("x".into()).code(), "SIGNATURE_MISSING");
    assert_eq!(Failure::Invalid("x".into()).code(), "SIGNATURE_INVALID");
    assert_eq!(
        Failure::TimestampOutOfTolerance {
            timestamp: 1,
            now: 2
        }
        .code(),
        "TIMESTAMP_OUT_OF_TOLERANCE"
    );
}

/// Failure messages go to logs and API responses: they must not help forge a signature.
#[test]
fn messages_carry_no_secret_or_expected_signature() {
    let mut failures = Vec::new();
    // Wrong signature of the right shape, for every scheme, so each reaches the comparison.
    let wrong_b64 = "v1,AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";
    failures.push(sw_check(
        &sw_headers(SW_ID, "1614265330", wrong_b64),
        SW_BODY,
        SW_TS,
    ));
    failures.push(sw_check(
        &sw_headers(SW_ID, "1614265330", "v1,@@"),
        SW_BODY,
        SW_TS,
    ));
    failures.push(stripe_check(
        &format!("t=1700000000,v1={ZERO_HEX}"),
        ST_BODY,
        ST_TS,
    ));
    failures.push(github_check(
        &format!("sha256={ZERO_HEX}"),
        GH_SECRET,
        GH_BODY,
    ));
    failures.push(shopify_check("AAAA", SH_SECRET, SH_BODY));
    failures.push(slack_check(
        "1531420618",
        &format!("v0={ZERO_HEX}"),
        SL_BODY,
        SL_TS,
    ));
    let h = headers(&[("x-signature", "sha256=00")]);
    failures.push(verify(&hex_cfg(), TOL, &h, GEN_BODY, 0));

    let secrets: [&[u8]; 5] = [&sw_key(), ST_SECRET, GH_SECRET, SH_SECRET, SL_SECRET];
    let expected = [
        SW_SIG[3..].to_string(),
        ST_SIG.to_string(),
        GH_SIG[7..].to_string(),
        SH_SIG.to_string(),
        SL_SIG[3..].to_string(),
        GEN_SHA256_HEX.to_string(),
    ];
    for failure in failures {
        let Err(f) = failure else {
            panic!("a wrong signature passed");
        };
        let text = format!("{f} {f:?}");
        for s in &secrets {
            assert!(
                !text.contains(&String::from_utf8_lossy(s).into_owned()),
                "{text}"
            );
            assert!(!text.contains(&hex::encode(s)), "{text}");
            assert!(!text.contains(&BASE64.encode(s)), "{text}");
        }
        for e in &expected {
            assert!(!text.to_lowercase().contains(&e.to_lowercase()), "{text}");
        }
    }
}
