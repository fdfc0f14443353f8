//! Sign-up and log in, sessions, members and their roles, projects,
//! personal API keys and the audit log.

use axum::http::{Method, StatusCode};
use serde_json::{json, Value};

use crate::harness::{json_request, Deployment, Setup, OWNER_EMAIL, OWNER_PASSWORD, PASSWORD};

#[tokio::test]
async fn the_first_sign_up_makes_the_first_organization_and_then_sign_up_closes() {
    let deployment = Deployment::start_with(Setup { empty: true, ..Setup::default() }).await;
    let (ada, signed_up) = deployment.sign_up("ada@example.com").await;
    assert_eq!(signed_up["email"], "ada@example.com");
    assert_eq!(signed_up["organizations"][0]["role"], "owner", "{signed_up}");
    let token = signed_up["project"]["api_token"].as_str().expect("the project's token");
    assert!(token.starts_with("phc_"), "{signed_up}");

    // The cookie it set is a session: the project is readable with it.
    let project = signed_up["project"]["id"].as_i64().expect("project id");
    let read = ada.ok(Method::GET, &format!("/api/projects/{project}/"), None).await;
    assert_eq!(read["api_token"], token);
    let me = ada.ok(Method::GET, "/api/users/@me/", None).await;
    assert_eq!(me["organizations"][0]["id"], signed_up["organizations"][0]["id"]);

    // With an organization in place, strangers are told how to get in.
    let stranger = json!({"email": "stranger@example.com", "password": PASSWORD});
    let refused = deployment
        .anonymous()
        .refused(Method::POST, "/api/signup/", Some(stranger), StatusCode::FORBIDDEN, "signup_closed")
        .await;
    let detail = refused["detail"].as_str().unwrap_or_default();
    assert!(detail.contains("signup = true"), "names the setting that opens it: {detail}");
}

#[tokio::test]
async fn a_refused_sign_up_creates_nothing() {
    let deployment = Deployment::start_with(Setup { empty: true, ..Setup::default() }).await;
    let anonymous = deployment.anonymous();
    // Each check comes before the first write, so nothing half-made stays.
    for body in [
        json!({"email": "ada@example.com", "password": PASSWORD, "timezone": "Mars/Olympus"}),
        json!({"email": "ada@example.com", "password": PASSWORD, "organization_name": " "}),
        json!({"email": "ada@example.com", "password": "short"}),
    ] {
        anonymous
            .refused(Method::POST, "/api/signup/", Some(body), StatusCode::BAD_REQUEST, "invalid_request")
            .await;
    }
    let long = format!("{}@example.com", "a".repeat(260));
    anonymous
        .refused(
            Method::POST,
            "/api/signup/",
            Some(json!({"email": long, "password": PASSWORD})),
            StatusCode::BAD_REQUEST,
            "email_too_long",
        )
        .await;
    // Sign-up is still open (no organization was made), and the email free.
    let (_, signed_up) = deployment.sign_up("ada@example.com").await;
    assert_eq!(signed_up["organizations"].as_array().map(Vec::len), Some(1), "{signed_up}");
}

#[tokio::test]
async fn log_in_takes_the_email_in_any_case_and_refuses_a_wrong_password() {
    let deployment = Deployment::start().await;
    let anonymous = deployment.anonymous();
    let wrong = json!({"email": OWNER_EMAIL, "password": "not the password"});
    let refused = anonymous
        .refused(Method::POST, "/api/login/", Some(wrong), StatusCode::UNAUTHORIZED, "invalid_credentials")
        .await;
    assert_eq!(refused["type"], "authentication_error");
    let unknown = json!({"email": "nobody@example.com", "password": OWNER_PASSWORD});
    anonymous
        .refused(Method::POST, "/api/login/", Some(unknown), StatusCode::UNAUTHORIZED, "invalid_credentials")
        .await;

    let owner = deployment.log_in(&OWNER_EMAIL.to_uppercase(), OWNER_PASSWORD).await;
    let me = owner.ok(Method::GET, "/api/users/@me/", None).await;
    assert_eq!(me["email"], OWNER_EMAIL);

    // The failed attempt on a real account is in its organization's log,
    // naming the email claimed; the password is nowhere in it.
    let audit = owner
        .ok(
            Method::GET,
            &format!("/api/organizations/{}/audit_log/?action=login.failed", deployment.organization_id()),
            None,
        )
        .await;
    let entries = audit["results"].as_array().expect("entries");
    assert_eq!(entries.len(), 1, "one failure on a known account: {audit}");
    assert_eq!(
        (entries[0]["actor"].as_str(), entries[0]["outcome"].as_str(), entries[0]["status"].as_u64()),
        (Some(OWNER_EMAIL), Some("invalid_credentials"), Some(401))
    );
    assert!(!audit.to_string().contains("not the password"), "a password in the audit log: {audit}");
}

#[tokio::test]
async fn logging_out_and_changing_the_password_end_sessions() {
    let deployment = Deployment::start().await;
    let first = deployment.owner().await;
    let second = deployment.owner().await;
    assert_eq!(first.send(Method::POST, "/api/logout/", None).await.status, StatusCode::NO_CONTENT);
    first.refused(Method::GET, "/api/users/@me/", None, StatusCode::UNAUTHORIZED, "not_authenticated").await;
    second.ok(Method::GET, "/api/users/@me/", None).await;

    let change = |current: &str| json!({"current_password": current, "new_password": "a new password"});
    second
        .refused(
            Method::POST,
            "/api/users/@me/password/",
            Some(change("a wrong guess")),
            StatusCode::UNAUTHORIZED,
            "invalid_credentials",
        )
        .await;
    let answer = second.send(Method::POST, "/api/users/@me/password/", Some(change(OWNER_PASSWORD))).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    assert!(!answer.session_cookie().is_empty(), "the changer gets a new session");
    second.refused(Method::GET, "/api/users/@me/", None, StatusCode::UNAUTHORIZED, "not_authenticated").await;
    deployment
        .anonymous()
        .refused(
            Method::POST,
            "/api/login/",
            Some(json!({"email": OWNER_EMAIL, "password": OWNER_PASSWORD})),
            StatusCode::UNAUTHORIZED,
            "invalid_credentials",
        )
        .await;
    deployment.log_in(OWNER_EMAIL, "a new password").await;
}

#[tokio::test]
async fn members_cannot_administer_and_admins_cannot_make_or_change_owners() {
    let deployment = Deployment::start().await;
    let organization = deployment.organization_id();
    let members = format!("/api/organizations/{organization}/members/");
    let (member_id, member) = deployment.member("member@example.com", "member").await;
    let (admin_id, admin) = deployment.member("admin@example.com", "admin").await;

    // A member reads the organization but changes nothing in it.
    let listed = member.ok(Method::GET, &members, None).await;
    assert_eq!(listed["count"], 3, "owner, member, admin: {listed}");
    let newcomer = json!({"email": "new@example.com", "password": PASSWORD});
    member
        .refused(Method::POST, &members, Some(newcomer.clone()), StatusCode::FORBIDDEN, "permission_denied")
        .await;
    member
        .refused(
            Method::POST,
            &format!("/api/organizations/{organization}/projects/"),
            Some(json!({"name": "Mine"})),
            StatusCode::FORBIDDEN,
            "permission_denied",
        )
        .await;
    member
        .refused(
            Method::PATCH,
            &format!("/api/projects/{}/", deployment.project_id()),
            Some(json!({"name": "Renamed"})),
            StatusCode::FORBIDDEN,
            "permission_denied",
        )
        .await;
    member
        .refused(
            Method::GET,
            &format!("/api/organizations/{organization}/audit_log/"),
            None,
            StatusCode::FORBIDDEN,
            "permission_denied",
        )
        .await;

    // An admin adds people and changes members, but not owners.
    admin.ok(Method::POST, &members, Some(newcomer)).await;
    let promoted =
        admin.ok(Method::PATCH, &format!("{members}{member_id}/"), Some(json!({"role": "admin"}))).await;
    assert_eq!(promoted["level"], "admin");
    admin
        .refused(
            Method::PATCH,
            &format!("{members}{member_id}/"),
            Some(json!({"role": "owner"})),
            StatusCode::FORBIDDEN,
            "permission_denied",
        )
        .await;
    let owner_id = deployment.user_id(OWNER_EMAIL).await;
    admin
        .refused(
            Method::PATCH,
            &format!("{members}{owner_id}/"),
            Some(json!({"role": "member"})),
            StatusCode::FORBIDDEN,
            "permission_denied",
        )
        .await;
    admin
        .refused(
            Method::DELETE,
            &format!("{members}{owner_id}/"),
            None,
            StatusCode::FORBIDDEN,
            "permission_denied",
        )
        .await;
    admin
        .refused(
            Method::PATCH,
            &format!("{members}{member_id}/"),
            Some(json!({"role": "superuser"})),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        )
        .await;

    // The owner may make owners; anyone may leave.
    let owner = deployment.owner().await;
    let made =
        owner.ok(Method::PATCH, &format!("{members}{admin_id}/"), Some(json!({"role": "owner"}))).await;
    assert_eq!(made["level"], "owner");
    assert_eq!(
        member.send(Method::DELETE, &format!("{members}{member_id}/"), None).await.status,
        StatusCode::NO_CONTENT
    );
    member.refused(Method::GET, &members, None, StatusCode::NOT_FOUND, "not_found").await;
}

#[tokio::test]
async fn the_last_owner_cannot_leave() {
    let deployment = Deployment::start().await;
    let organization = deployment.organization_id();
    let owner = deployment.owner().await;
    let owner_id = deployment.user_id(OWNER_EMAIL).await;
    owner
        .refused(
            Method::DELETE,
            &format!("/api/organizations/{organization}/members/{owner_id}/"),
            None,
            StatusCode::BAD_REQUEST,
            "invalid_request",
        )
        .await;
    let members = owner.ok(Method::GET, &format!("/api/organizations/{organization}/members/"), None).await;
    assert_eq!(members["results"][0]["level"], "owner", "still the owner: {members}");
}

#[tokio::test]
async fn another_organization_is_not_found_with_a_session_or_a_key() {
    let deployment = Deployment::start_with(Setup { open_signup: true, ..Setup::default() }).await;
    let (stranger, signed_up) = deployment.sign_up("stranger@example.com").await;
    let stranger_key = stranger.new_key(json!(["*"])).await;
    let stranger_api = stranger.with_key(&stranger_key);
    let (organization, project) = (deployment.organization_id(), deployment.project_id());
    for path in [
        format!("/api/organizations/{organization}/"),
        format!("/api/organizations/{organization}/members/"),
        format!("/api/organizations/{organization}/projects/"),
        format!("/api/organizations/{organization}/audit_log/"),
        format!("/api/projects/{project}/"),
        format!("/api/projects/{project}/feature_flags/"),
        format!("/api/projects/{project}/feature_flags/local_evaluation/"),
        format!("/flags/definitions?token={}", deployment.token()),
    ] {
        stranger.refused(Method::GET, &path, None, StatusCode::NOT_FOUND, "not_found").await;
        stranger_api.refused(Method::GET, &path, None, StatusCode::NOT_FOUND, "not_found").await;
    }
    stranger
        .refused(
            Method::POST,
            &format!("/api/organizations/{organization}/members/"),
            Some(json!({"email": "stranger@example.com", "role": "owner"})),
            StatusCode::NOT_FOUND,
            "not_found",
        )
        .await;
    // A key may not be made for an organization one is not in.
    stranger
        .refused(
            Method::POST,
            "/api/personal_api_keys/",
            Some(json!({"label": "theirs", "organization_id": organization})),
            StatusCode::NOT_FOUND,
            "not_found",
        )
        .await;
    // The stranger's own organization lists only their own project.
    let own = signed_up["organizations"][0]["id"].as_i64().expect("organization id");
    let projects = stranger.ok(Method::GET, &format!("/api/organizations/{own}/projects/"), None).await;
    assert_eq!(projects["count"], 1, "{projects}");
    assert_ne!(projects["results"][0]["id"], project);
}

#[tokio::test]
async fn keys_do_what_their_scopes_allow_and_stop_when_revoked() {
    let deployment = Deployment::start().await;
    let owner = deployment.owner().await;
    let flags = format!("/api/projects/{}/feature_flags/", deployment.project_id());
    let read_flags = owner.with_key(&owner.new_key(json!(["feature_flag:read"])).await);
    read_flags.ok(Method::GET, &flags, None).await;
    let flag = json!({"key": "scoped", "filters": {"groups": [{"rollout_percentage": 10}]}});
    let refused = read_flags
        .refused(Method::POST, &flags, Some(flag.clone()), StatusCode::FORBIDDEN, "permission_denied")
        .await;
    assert!(refused["detail"].as_str().is_some_and(|d| d.contains("feature_flag:write")), "{refused}");
    read_flags
        .refused(
            Method::GET,
            &format!("/api/projects/{}/cohorts/", deployment.project_id()),
            None,
            StatusCode::FORBIDDEN,
            "permission_denied",
        )
        .await;
    // Keys cannot mint keys, nor manage people.
    read_flags
        .refused(
            Method::POST,
            "/api/personal_api_keys/",
            Some(json!({"label": "more"})),
            StatusCode::FORBIDDEN,
            "session_required",
        )
        .await;
    owner
        .refused(
            Method::POST,
            "/api/personal_api_keys/",
            Some(json!({"label": "bad", "scopes": ["feature_flag:delete"]})),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        )
        .await;

    let full_secret = owner.new_key(json!(["*"])).await;
    let full = owner.with_key(&full_secret);
    full.ok(Method::POST, &flags, Some(flag)).await;
    let keys = owner.ok(Method::GET, "/api/personal_api_keys/", None).await;
    assert_eq!(keys["count"], 2, "{keys}");
    assert!(!keys.to_string().contains(&full_secret), "a key's secret is shown once: {keys}");
    let id = keys["results"][1]["id"].as_i64().expect("key id");
    let revoked = owner.send(Method::DELETE, &format!("/api/personal_api_keys/{id}/"), None).await;
    assert_eq!(revoked.status, StatusCode::NO_CONTENT);
    full.refused(Method::GET, &flags, None, StatusCode::UNAUTHORIZED, "api_key_revoked").await;
    deployment
        .with_key("phx_not_a_key_of_this_deployment")
        .refused(Method::GET, &flags, None, StatusCode::UNAUTHORIZED, "invalid_api_key")
        .await;
    deployment
        .anonymous()
        .refused(Method::GET, &flags, None, StatusCode::UNAUTHORIZED, "not_authenticated")
        .await;
}

#[tokio::test]
async fn a_key_limited_to_one_project_sees_no_other() {
    let deployment = Deployment::start().await;
    let owner = deployment.owner().await;
    let organization = deployment.organization_id();
    let other = owner
        .ok(
            Method::POST,
            &format!("/api/organizations/{organization}/projects/"),
            Some(json!({"name": "Other"})),
        )
        .await;
    let other = other["id"].as_i64().expect("project id");
    let limited = owner.with_key(
        &owner.new_key_with(json!({"label": "one project", "project_ids": [deployment.project_id()]})).await,
    );
    limited.ok(Method::GET, &format!("/api/projects/{}/feature_flags/", deployment.project_id()), None).await;
    limited
        .refused(
            Method::GET,
            &format!("/api/projects/{other}/feature_flags/"),
            None,
            StatusCode::NOT_FOUND,
            "not_found",
        )
        .await;
    let listed = limited.ok(Method::GET, &format!("/api/organizations/{organization}/projects/"), None).await;
    assert_eq!(listed["count"], 1, "only its project: {listed}");
    // What spans the organization is beyond it, even for an owner's key.
    limited
        .refused(
            Method::GET,
            &format!("/api/organizations/{organization}/audit_log/"),
            None,
            StatusCode::FORBIDDEN,
            "permission_denied",
        )
        .await;
    // A key cannot be limited to a project its organization does not have.
    owner
        .refused(
            Method::POST,
            "/api/personal_api_keys/",
            Some(json!({"label": "x", "project_ids": [other + 100]})),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        )
        .await;
}

#[tokio::test]
async fn another_site_cannot_act_with_the_session_cookie() {
    let deployment = Deployment::start().await;
    let owner = deployment.owner().await;
    let members = format!("/api/organizations/{}/members/", deployment.organization_id());
    let body = json!({"email": "evil@example.com", "password": PASSWORD, "role": "owner"});
    let mut forged = json_request(Method::POST, &members, Some(body.clone()));
    forged.headers_mut().insert("origin", "https://evil.example".parse().expect("header"));
    forged.headers_mut().insert("sec-fetch-site", "cross-site".parse().expect("header"));
    let answer = owner.request(forged).await;
    assert_eq!(
        (answer.status, answer.code()),
        (StatusCode::FORBIDDEN, "permission_denied"),
        "{}",
        answer.body
    );
    let listed = owner.ok(Method::GET, &members, None).await;
    assert_eq!(listed["count"], 1, "nobody was added: {listed}");
    // The same change from Warren's own page goes through.
    let mut own = json_request(Method::POST, &members, Some(body));
    own.headers_mut().insert("origin", "http://warren.test".parse().expect("header"));
    own.headers_mut().insert("sec-fetch-site", "same-origin".parse().expect("header"));
    assert_eq!(owner.request(own).await.status, StatusCode::CREATED);
}

#[tokio::test]
async fn projects_are_created_and_changed_by_admins_with_valid_settings() {
    let deployment = Deployment::start().await;
    let owner = deployment.owner().await;
    let organization = deployment.organization_id();
    let created = owner
        .send(
            Method::POST,
            &format!("/api/organizations/{organization}/projects/"),
            Some(json!({"name": "Mobile", "timezone": "Europe/Paris"})),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    let id = created.body["id"].as_i64().expect("project id");
    assert_ne!(created.body["api_token"], deployment.token(), "each project has its own token");
    let path = format!("/api/projects/{id}/");
    let filters =
        json!([{"key": "email", "value": "@warren.test", "operator": "not_icontains", "type": "person"}]);
    let changed = owner
        .ok(Method::PATCH, &path, Some(json!({"week_start_day": 1, "test_account_filters": filters})))
        .await;
    let read = owner.ok(Method::GET, &path, None).await;
    assert_eq!(read, changed);
    assert_eq!(
        (read["name"].as_str(), read["timezone"].as_str(), read["week_start_day"].as_i64()),
        (Some("Mobile"), Some("Europe/Paris"), Some(1))
    );
    assert_eq!(read["test_account_filters"], filters);
    for bad in [
        json!({"test_account_filters": [{"key": 7}]}),
        json!({"timezone": "Nowhere/Else"}),
        json!({"week_start_day": 7}),
    ] {
        owner.refused(Method::PATCH, &path, Some(bad), StatusCode::BAD_REQUEST, "invalid_request").await;
    }
    assert_eq!(owner.ok(Method::GET, &path, None).await, read, "refused changes change nothing");
    owner.refused(Method::GET, "/api/projects/999/", None, StatusCode::NOT_FOUND, "not_found").await;
    owner.refused(Method::GET, "/api/projects/first/", None, StatusCode::NOT_FOUND, "not_found").await;
}

/// Who did what, from the audit log: entries of `action`, newest first.
pub async fn audit_entries(deployment: &Deployment, action: &str) -> Vec<Value> {
    let owner = deployment.owner().await;
    let path = format!("/api/organizations/{}/audit_log/?action={action}", deployment.organization_id());
    let log = owner.ok(Method::GET, &path, None).await;
    log["results"].as_array().cloned().unwrap_or_default()
}
