//! Storage invariants on both backends: optimistic versioning and the outbox dedupe key.

use acctd::storage::audit::{self, OutboxMessage};
use acctd::storage::{self, org};

use crate::helpers::{both, t, Backend, Harness};

/// SPEC 11: a write based on a stale read is refused, and the newer write is not lost.
async fn a_stale_concurrent_write_is_refused_not_lost(backend: Backend) {
    let Some(h) = Harness::start(backend, "2026-03-01T00:00:00Z").await else {
        return;
    };
    h.signup("acme", false, false).await;
    let db = h.engine.db();
    let mut first = h.org("acme").await;
    let mut second = first.clone();

    first.lifecycle.payment_method = true;
    org::update(db, &mut first, t("2026-03-02T00:00:00Z"))
        .await
        .unwrap();

    second.tier = 50_000;
    let err = org::update(db, &mut second, t("2026-03-02T00:00:01Z"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, storage::Error::Stale { version: 0, .. }),
        "{err}"
    );

    let stored = h.org("acme").await;
    assert!(stored.lifecycle.payment_method, "the first write is kept");
    assert_eq!(stored.tier, 20_000, "the stale write changed nothing");
    assert_eq!(stored.version, 1);
}
both!(a_stale_concurrent_write_is_refused_not_lost);

/// SPEC 6: a replayed cause never makes a second message.
async fn the_outbox_skips_a_replayed_dedupe_key(backend: Backend) {
    let Some(h) = Harness::start(backend, "2026-03-01T00:00:00Z").await else {
        return;
    };
    let db = h.engine.db();
    let message = OutboxMessage {
        org_id: "acme".into(),
        channel: "email",
        template: "payment_failed".into(),
        recipients: vec!["billing@acme.test".into()],
        payload: serde_json::json!({}),
        dedupe_key: "acme:payment_failed:2026-04-01T00:00:00Z".into(),
        at: t("2026-04-01T00:00:00Z"),
    };
    assert_eq!(
        audit::enqueue(db, std::slice::from_ref(&message))
            .await
            .unwrap(),
        1
    );
    assert_eq!(audit::enqueue(db, &[message]).await.unwrap(), 0);
    assert_eq!(audit::outbox_backlog(db).await.unwrap(), 1);
}
both!(the_outbox_skips_a_replayed_dedupe_key);
