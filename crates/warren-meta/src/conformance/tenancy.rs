//! [`Tenancy`]'s properties: the bootstrap, projects found by id and token,
//! created and updated, and the internal project.

use super::{new_user, MetaFactory};
use crate::accounts::{NewProject, ProjectUpdate};
use crate::{Accounts, BootstrapRequest, MetaSchema, Tenancy};

pub async fn bootstrap_creates_project_one_once(factory: &impl MetaFactory) {
    let store = factory.create().await;
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
    assert_eq!(store.project(1).await.expect("lookup"), Some(first.project.clone()));
    assert_eq!(store.project(2).await.expect("lookup"), None);
    assert_eq!((first.project.timezone.as_str(), first.project.week_start_day), ("UTC", 0));
    assert_eq!(first.project.test_account_filters, "[]");
    assert_eq!(store.project_by_token("phc_unknown").await.expect("lookup"), None);
    let organization =
        store.api_key_by_secret(&first.api_key).await.expect("lookup").map(|key| key.organization_id);
    assert_eq!(organization, Some(first.project.organization_id));
    assert_eq!(store.api_key_by_secret("phx_wrong_wrong_wrong").await.expect("lookup"), None);
}

pub async fn bootstrap_takes_fixed_secrets_and_validates_them(factory: &impl MetaFactory) {
    let store = factory.create().await;
    let bad = BootstrapRequest { project_token: Some("phx_personal".into()), ..BootstrapRequest::default() };
    assert!(store.bootstrap(bad).await.is_err(), "a phx_ token is refused");
    let bad_zone = BootstrapRequest { timezone: Some("Mars/Olympus".into()), ..BootstrapRequest::default() };
    assert!(store.bootstrap(bad_zone).await.is_err(), "an unknown time zone is refused");
    let fixed = BootstrapRequest {
        project_token: Some("phc_fixed_token".into()),
        api_key: Some("phx_fixed_api_key_0123456789".into()),
        timezone: Some("Europe/Berlin".into()),
    };
    let made = store.bootstrap(fixed).await.expect("bootstrap").expect("created");
    assert_eq!(made.project.api_token, "phc_fixed_token");
    assert_eq!(store.project(1).await.expect("lookup").map(|p| p.timezone).as_deref(), Some("Europe/Berlin"));
    let later =
        BootstrapRequest { project_token: Some("phx_ignored_now".into()), ..BootstrapRequest::default() };
    assert!(store.bootstrap(later).await.expect("ignored").is_none(), "settings only matter once");
    assert!(store.api_key_by_secret("phx_fixed_api_key_0123456789").await.expect("lookup").is_some());
}

pub async fn internal_project_is_made_once(factory: &impl MetaFactory) {
    let store = factory.create().await;
    assert!(store.ensure_internal_project("Warren").await.is_err(), "needs a bootstrapped deployment");
    store.bootstrap(BootstrapRequest::default()).await.expect("bootstrap");
    let default = store.project(1).await.expect("project").expect("project 1");
    assert!(!default.internal);
    // Processes starting at once all end up with the same one.
    let name = "Warren (internal)";
    let (a, b, c) = tokio::join!(
        store.ensure_internal_project(name),
        store.ensure_internal_project(name),
        store.ensure_internal_project(name)
    );
    let internal = a.expect("internal");
    assert_eq!(b.expect("internal"), internal);
    assert_eq!(c.expect("internal"), internal);
    assert!(internal.internal);
    assert_eq!(internal.organization_id, default.organization_id);
    assert_eq!(internal.name, name);
    let again = store.ensure_internal_project("another name").await.expect("internal");
    assert_eq!(again, internal, "made once");
    let found = store.project_by_token(&internal.api_token).await.expect("by token");
    assert_eq!(found, Some(internal));
}

pub async fn projects_are_created_and_updated(factory: &impl MetaFactory) {
    let store = factory.create().await;
    store.bootstrap(BootstrapRequest::default()).await.expect("bootstrap");
    let ada = store.create_user(new_user("ada@example.com")).await.expect("user");
    let org = store.create_organization("Acme", ada.id).await.expect("organization");
    let project = store
        .create_project(NewProject {
            organization_id: org.id,
            name: "Web".into(),
            timezone: Some("Asia/Tokyo".into()),
        })
        .await
        .expect("project");
    assert!(project.id > 1, "after the bootstrap project");
    assert_eq!(store.project_by_token(&project.api_token).await.expect("lookup"), Some(project.clone()));
    let bad = NewProject { organization_id: org.id, name: "x".into(), timezone: Some("Nowhere/City".into()) };
    assert!(store.create_project(bad).await.is_err());
    let updated = store
        .update_project(
            project.id,
            ProjectUpdate {
                week_start_day: Some(1),
                name: Some("Web app".into()),
                session_recording_opt_in: Some(true),
                ..ProjectUpdate::default()
            },
        )
        .await
        .expect("update")
        .expect("exists");
    assert_eq!(
        (updated.name.as_str(), updated.week_start_day, updated.timezone.as_str()),
        ("Web app", 1, "Asia/Tokyo")
    );
    assert!(updated.session_recording_opt_in && !project.session_recording_opt_in);
    assert!(store
        .update_project(project.id, ProjectUpdate { week_start_day: Some(5), ..ProjectUpdate::default() })
        .await
        .is_err());
    assert_eq!(store.projects(org.id).await.expect("list"), vec![updated]);
    assert_eq!(store.update_project(9_999, ProjectUpdate::default()).await.expect("update"), None);
}
