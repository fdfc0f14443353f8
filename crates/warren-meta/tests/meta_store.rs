//! The MetaStore behaviour every adapter must show, run against SQLite.

use warren_meta::{BootstrapRequest, MetaStore, SqliteMeta};

async fn sqlite() -> (tempfile::TempDir, SqliteMeta) {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}", dir.path().join("meta.db").display());
    let store = SqliteMeta::connect(&url).await.expect("connect");
    store.migrate().await.expect("migrate");
    (dir, store)
}

#[tokio::test]
async fn bootstrap_creates_project_one_once() {
    let (_dir, store) = sqlite().await;
    store.ping().await.expect("a connected store answers");
    let first = store.bootstrap(BootstrapRequest::default()).await.expect("bootstrap");
    let first = first.expect("a fresh store is bootstrapped");
    assert_eq!(first.project.id, 1);
    assert!(first.project.api_token.starts_with("phc_"));
    assert!(first.api_key.starts_with("phx_"));
    let again = store.bootstrap(BootstrapRequest::default()).await.expect("bootstrap");
    assert!(again.is_none(), "a second bootstrap changes nothing");

    let found = store.project_by_token(&first.project.api_token).await.expect("lookup");
    assert_eq!(found, Some(first.project.clone()));
    assert_eq!(store.project_by_token("phc_unknown").await.expect("lookup"), None);
    let organization = store.organization_for_api_key(&first.api_key).await.expect("lookup");
    assert_eq!(organization, Some(first.project.organization_id));
    assert_eq!(store.organization_for_api_key("phx_wrong_wrong_wrong").await.expect("lookup"), None);
}

#[tokio::test]
async fn bootstrap_takes_fixed_secrets_and_validates_them() {
    let (_dir, store) = sqlite().await;
    let bad = BootstrapRequest { project_token: Some("phx_personal".into()), api_key: None };
    assert!(store.bootstrap(bad).await.is_err(), "a phx_ token is refused");
    let fixed = BootstrapRequest {
        project_token: Some("phc_fixed_token".into()),
        api_key: Some("phx_fixed_api_key_0123456789".into()),
    };
    let made = store.bootstrap(fixed).await.expect("bootstrap").expect("created");
    assert_eq!(made.project.api_token, "phc_fixed_token");
    let later = BootstrapRequest { project_token: Some("phx_ignored_now".into()), api_key: None };
    assert!(store.bootstrap(later).await.expect("ignored").is_none(), "settings only matter once");
    assert!(store.organization_for_api_key("phx_fixed_api_key_0123456789").await.expect("lookup").is_some());
}

#[tokio::test]
async fn migrations_are_idempotent_and_data_survives_reconnect() {
    let (dir, store) = sqlite().await;
    store.bootstrap(BootstrapRequest::default()).await.expect("bootstrap");
    drop(store);
    let url = format!("sqlite://{}", dir.path().join("meta.db").display());
    let store = SqliteMeta::connect(&url).await.expect("reconnect");
    store.migrate().await.expect("migrate again");
    assert!(store.bootstrap(BootstrapRequest::default()).await.expect("bootstrap").is_none());
}
