//! [`AuditLog`]'s properties: entries filtered and paged per organization,
//! pruned by age, and ids never given again.

use super::MetaFactory;
use crate::audit::{AuditEntry, AuditFilter};
use crate::AuditLog;

fn audit(org: Option<i64>, action: &str, at_us: i64, outcome: &str) -> AuditEntry {
    AuditEntry {
        id: 0,
        at_us,
        organization_id: org,
        project_id: None,
        user_id: Some(1),
        api_key_id: None,
        actor: "ada@example.com".into(),
        credential: "session".into(),
        action: action.into(),
        method: "POST".into(),
        route: "/api/x".into(),
        resource: None,
        source: "127.0.0.1".into(),
        status: 200,
        outcome: outcome.into(),
    }
}

pub async fn audit_log_filters_and_pages(factory: &impl MetaFactory) {
    let store = factory.create().await;
    for i in 0..10 {
        let action = if i % 2 == 0 { "insight.create" } else { "insight.read" };
        store.record_audit(&audit(Some(1), action, 1_000 + i, "ok")).await.expect("record");
    }
    store.record_audit(&audit(Some(2), "insight.create", 5_000, "ok")).await.expect("record");
    store.record_audit(&audit(Some(1), "login.failed", 6_000, "invalid_credentials")).await.expect("record");
    let all = store.audit_log(1, &AuditFilter { limit: 100, ..AuditFilter::default() }).await.expect("list");
    assert_eq!(all.len(), 11, "other organizations' entries are not listed");
    assert_eq!(all[0].action, "login.failed", "newest first");
    let creates = AuditFilter { action: Some("insight.create".into()), limit: 100, ..AuditFilter::default() };
    assert_eq!(store.audit_log(1, &creates).await.expect("list").len(), 5);
    let window =
        AuditFilter { since_us: Some(1_002), until_us: Some(1_005), limit: 100, ..AuditFilter::default() };
    assert_eq!(
        store.audit_log(1, &window).await.expect("list").iter().map(|e| e.at_us).collect::<Vec<_>>(),
        [1_004, 1_003, 1_002]
    );
    let first_page =
        store.audit_log(1, &AuditFilter { limit: 4, ..AuditFilter::default() }).await.expect("list");
    let next = AuditFilter { before_id: first_page.last().map(|e| e.id), limit: 4, ..AuditFilter::default() };
    let second_page = store.audit_log(1, &next).await.expect("list");
    assert_eq!(second_page.len(), 4);
    assert!(second_page[0].id < first_page[3].id);
    let failed =
        AuditFilter { outcome: Some("invalid_credentials".into()), limit: 10, ..AuditFilter::default() };
    assert_eq!(store.audit_log(1, &failed).await.expect("list").len(), 1);
    assert_eq!(store.prune_audit_log(1_005).await.expect("prune"), 5);
    let left = store.audit_log(1, &AuditFilter { limit: 100, ..AuditFilter::default() }).await.expect("list");
    assert_eq!(left.len(), 6);
    // Readers page by id, so ids go on even after retention empties the log.
    assert_eq!(store.prune_audit_log(i64::MAX).await.expect("prune"), 7);
    store.record_audit(&audit(Some(1), "insight.read", 7_000, "ok")).await.expect("record");
    let after = store.audit_log(1, &AuditFilter { limit: 1, ..AuditFilter::default() }).await.expect("list");
    assert!(after[0].id > left[0].id, "an emptied log gave id {} again", after[0].id);
}
