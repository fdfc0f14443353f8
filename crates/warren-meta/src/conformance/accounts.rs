//! [`Accounts`]' properties: users and log in, memberships and roles, login
//! sessions, and personal API keys.

use super::{new_user, MetaFactory};
use crate::accounts::{NewApiKey, NewUser, Role};
use crate::{Accounts, MetaError, Tenancy};

pub async fn users_organizations_and_sessions(factory: &impl MetaFactory) {
    let store = factory.create().await;
    let ada = store.create_user(new_user(" Ada@Example.com ")).await.expect("user");
    assert_eq!(ada.email, "ada@example.com", "emails are trimmed and lower-cased");
    let again = store.create_user(new_user("ada@example.com")).await;
    assert!(matches!(again, Err(MetaError::Conflict { .. })), "{again:?}");
    for bad in [NewUser { password: "short".into(), ..new_user("b@example.com") }, new_user("not-an-email")] {
        assert!(matches!(store.create_user(bad).await, Err(MetaError::Invalid { .. })));
    }
    assert_eq!(
        store.verify_login("ADA@example.com", "correct horse battery").await.expect("login"),
        Some(ada.clone())
    );
    assert_eq!(store.verify_login("ada@example.com", "wrong horse battery").await.expect("login"), None);
    assert_eq!(store.verify_login("nobody@example.com", "correct horse battery").await.expect("login"), None);

    assert!(!store.any_organization().await.expect("organizations"), "a new store has none");
    let org = store.create_organization("Acme", ada.id).await.expect("organization");
    assert_eq!(store.role(org.id, ada.id).await.expect("role"), Some(Role::Owner));
    assert!(store.any_organization().await.expect("organizations"));
    let bob = store.create_user(new_user("bob@example.com")).await.expect("user");
    assert_eq!(store.role(org.id, bob.id).await.expect("role"), None);
    store.set_role(org.id, bob.id, Some(Role::Member)).await.expect("add");
    store.set_role(org.id, bob.id, Some(Role::Admin)).await.expect("promote");
    let members = store.members(org.id).await.expect("members");
    assert_eq!(
        members.iter().map(|m| (m.user.email.as_str(), m.role)).collect::<Vec<_>>(),
        [("ada@example.com", Role::Owner), ("bob@example.com", Role::Admin)]
    );
    assert_eq!(store.memberships(bob.id).await.expect("memberships")[0].organization, org);
    let orphaning = store.set_role(org.id, ada.id, Some(Role::Member)).await;
    assert!(matches!(orphaning, Err(MetaError::Invalid { .. })), "the last owner stays: {orphaning:?}");
    assert!(matches!(store.set_role(org.id, ada.id, None).await, Err(MetaError::Invalid { .. })));
    assert_eq!(
        store.role(org.id, ada.id).await.expect("role"),
        Some(Role::Owner),
        "the refused change left nothing"
    );
    store.set_role(org.id, bob.id, None).await.expect("remove");
    assert!(store.memberships(bob.id).await.expect("memberships").is_empty());
    assert_eq!(store.user_by_email("BOB@example.com").await.expect("lookup"), Some(bob.clone()));

    let now = 1_800_000_000_000_000;
    let token = store.create_login_session(ada.id, now, 3_600_000_000).await.expect("session");
    assert_eq!(store.user_for_session(&token, now + 1).await.expect("session"), Some(ada.clone()));
    assert_eq!(store.user_for_session(&token, now + 3_600_000_001).await.expect("session"), None, "expired");
    assert_eq!(store.user_for_session("forged", now).await.expect("session"), None);
    store.delete_login_session(&token).await.expect("logout");
    assert_eq!(store.user_for_session(&token, now + 1).await.expect("session"), None, "logged out");

    let token = store.create_login_session(ada.id, now, 3_600_000_000).await.expect("session");
    assert!(store.set_password(ada.id, "short").await.is_err());
    store.set_password(ada.id, "a brand new password").await.expect("new password");
    assert_eq!(store.user_for_session(&token, now + 1).await.expect("session"), None, "sessions end");
    assert_eq!(store.verify_login("ada@example.com", "correct horse battery").await.expect("login"), None);
    assert_eq!(
        store.verify_login("ada@example.com", "a brand new password").await.expect("login"),
        Some(ada.clone())
    );
}

pub async fn api_keys_are_scoped_revocable_and_hashed(factory: &impl MetaFactory) {
    let store = factory.create().await;
    let ada = store.create_user(new_user("ada@example.com")).await.expect("user");
    let org = store.create_organization("Acme", ada.id).await.expect("organization");
    let made = store
        .create_api_key(NewApiKey {
            organization_id: org.id,
            user_id: Some(ada.id),
            label: "ci".into(),
            scopes: vec!["insight:read".into(), "feature_flag:write".into()],
            project_ids: vec![7],
        })
        .await
        .expect("key");
    assert!(made.secret.starts_with("phx_"));
    assert!(!made.key.mask.contains(&made.secret[8..made.secret.len() - 4]), "the mask hides the middle");
    let found = store.api_key_by_secret(&made.secret).await.expect("lookup").expect("found");
    assert_eq!((found.scopes.len(), found.project_ids.as_slice()), (2, &[7][..]));
    assert!(
        found.last_used_at.is_some()
            || store.api_key_by_secret(&made.secret).await.expect("lookup").is_some()
    );
    let listed = store.api_keys(org.id).await.expect("list");
    assert_eq!(listed.len(), 1);
    assert!(listed[0].last_used_at.is_some(), "use is recorded");
    assert!(
        !store.revoke_api_key(org.id + 1, made.key.id).await.expect("revoke"),
        "another organization's key"
    );
    assert!(store.revoke_api_key(org.id, made.key.id).await.expect("revoke"));
    let revoked = store.api_key_by_secret(&made.secret).await.expect("lookup").expect("still found");
    assert!(revoked.revoked_at.is_some());
}
