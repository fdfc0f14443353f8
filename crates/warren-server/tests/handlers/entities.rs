//! The product entities under `/api/projects/{id}/<collection>/`: the same
//! five routes for every kind, each kind's checks, and who may reach them.

use axum::body::Body;
use axum::http::{header, Method, StatusCode};
use serde_json::{json, Value};

use crate::accounts::audit_entries;
use crate::harness::{json_request, Deployment, Setup, OWNER_EMAIL};

/// A valid body and a change to it, for each kind's collection.
fn samples() -> Vec<(String, Value, Value)> {
    // Shared with the other API test binary: one body per kind, kept in one place.
    let samples: Vec<Value> = serde_json::from_str(include_str!("../../../../tests/api/entity_samples.json"))
        .expect("tests/api/entity_samples.json");
    samples
        .into_iter()
        .map(|sample| {
            let collection = sample["collection"].as_str().expect("collection").to_string();
            (collection, sample["body"].clone(), sample["change"].clone())
        })
        .collect()
}

#[tokio::test]
async fn every_kind_is_created_read_changed_listed_and_deleted() {
    let deployment = Deployment::start().await;
    let owner = deployment.owner().await;
    let owner_id = deployment.user_id(OWNER_EMAIL).await;
    let project = deployment.project_id();
    for (collection, body, change) in samples() {
        let base = format!("/api/projects/{project}/{collection}/");
        let created = owner.send(Method::POST, &base, Some(body.clone())).await;
        assert_eq!(created.status, StatusCode::CREATED, "{collection}: {}", created.body);
        let id = created.body["id"].as_i64().unwrap_or_else(|| panic!("{collection}: {}", created.body));
        assert_eq!(created.body["project"], project, "{collection}");
        assert_eq!(created.body["created_by"]["id"], owner_id, "{collection}");
        let item = format!("{base}{id}/");
        assert_eq!(owner.ok(Method::GET, &item, None).await, created.body, "{collection}: read back");

        // PATCH replaces what it names and keeps the rest.
        let changed = owner.ok(Method::PATCH, &item, Some(change.clone())).await;
        let mut expected = body.as_object().cloned().expect("object");
        expected.extend(change.as_object().cloned().expect("object"));
        for (field, value) in &expected {
            assert_eq!(&changed[field], value, "{collection}: {field} after PATCH: {changed}");
        }
        assert_eq!(
            changed["created_by"], created.body["created_by"],
            "{collection}: PATCH keeps the creator"
        );
        assert_eq!(owner.ok(Method::GET, &item, None).await, changed, "{collection}: the change is stored");
        let listed = owner.ok(Method::GET, &base, None).await;
        let ids: Vec<&Value> =
            listed["results"].as_array().expect("results").iter().map(|e| &e["id"]).collect();
        assert!(ids.contains(&&json!(id)), "{collection}: {listed}");

        assert_eq!(
            owner.send(Method::DELETE, &item, None).await.status,
            StatusCode::NO_CONTENT,
            "{collection}"
        );
        owner.refused(Method::GET, &item, None, StatusCode::NOT_FOUND, "not_found").await;
        owner.refused(Method::DELETE, &item, None, StatusCode::NOT_FOUND, "not_found").await;
        owner.refused(Method::PATCH, &item, Some(change), StatusCode::NOT_FOUND, "not_found").await;
    }
}

#[tokio::test]
async fn fields_the_server_owns_are_not_taken_from_the_body() {
    let deployment = Deployment::start().await;
    let owner = deployment.owner().await;
    let owner_id = deployment.user_id(OWNER_EMAIL).await;
    let base = format!("/api/projects/{}/annotations/", deployment.project_id());
    let claimed = json!({
        "content": "launch", "date_marker": "2024-03-01T00:00:00Z",
        "id": 4242, "project": 9, "created_by": {"id": 77}, "created_at": "1999-01-01T00:00:00Z",
    });
    let created = owner.ok(Method::POST, &base, Some(claimed.clone())).await;
    assert_ne!(created["id"], 4242);
    assert_eq!(created["project"], deployment.project_id());
    assert_eq!(created["created_by"]["id"], owner_id);
    assert_ne!(created["created_at"], "1999-01-01T00:00:00Z");
    let id = created["id"].as_i64().expect("id");
    let changed = owner.ok(Method::PATCH, &format!("{base}{id}/"), Some(claimed)).await;
    assert_eq!((changed["id"].as_i64(), &changed["created_by"]), (Some(id), &created["created_by"]));
    owner.refused(Method::GET, &format!("{base}4242/"), None, StatusCode::NOT_FOUND, "not_found").await;
}

#[tokio::test]
async fn bodies_that_do_not_fit_their_kind_are_refused() {
    let deployment = Deployment::start().await;
    let owner = deployment.owner().await;
    let project = deployment.project_id();
    let refuse = |collection: &str, body: Value| {
        let owner = owner.clone();
        let collection = collection.to_string();
        async move {
            let path = format!("/api/projects/{project}/{collection}/");
            let refused = owner
                .refused(Method::POST, &path, Some(body.clone()), StatusCode::BAD_REQUEST, "invalid_request")
                .await;
            assert_eq!(refused["type"], "validation_error", "{collection} {body}: {refused}");
        }
    };
    // Every kind but insights has a required field a number is not.
    for (collection, _, _) in samples().into_iter().filter(|(c, _, _)| *c != "insights") {
        refuse(&collection, json!({"name": 7})).await;
    }
    refuse("insights", json!([{"name": "a list"}])).await;
    refuse("actions", json!({"name": "No steps", "steps": []})).await;
    refuse("actions", json!({"name": "Fuzzy", "steps": [{"url": "/x", "url_matching": "fuzzy"}]})).await;
    refuse("actions", json!({"name": "Bad regex", "steps": [{"url": "(", "url_matching": "regex"}]})).await;
    refuse("cohorts", json!({"name": "No definition"})).await;
    refuse("insights", json!({"query": {"kind": "InsightVizNode"}})).await;
    refuse("dashboards", json!({"name": "Tiles", "tiles": [{"insight": 1, "text": {"body": "both"}}]})).await;
    refuse("annotations", json!({"content": "when?", "date_marker": "yesterday"})).await;
    refuse("annotations", json!({"content": "x", "date_marker": "2024-03-01T00:00:00Z", "scope": "world"}))
        .await;
    refuse("experiments", json!({"name": "x", "feature_flag_key": "x", "start_date": "soon"})).await;

    // Not JSON at all: the body is cut short.
    let mut request = json_request(Method::POST, &format!("/api/projects/{project}/annotations/"), None);
    *request.body_mut() = Body::from("{\"content\": ");
    request.headers_mut().insert(header::CONTENT_TYPE, "application/json".parse().expect("header"));
    let answer = owner.request(request).await;
    assert_eq!(
        (answer.status, answer.code()),
        (StatusCode::BAD_REQUEST, "invalid_request"),
        "{}",
        answer.body
    );

    // Nothing refused was stored.
    for (collection, _, _) in samples() {
        let listed = owner.ok(Method::GET, &format!("/api/projects/{project}/{collection}/"), None).await;
        assert_eq!(listed["count"], 0, "{collection}: {listed}");
    }
}

#[tokio::test]
async fn an_id_of_another_kind_or_project_is_not_found() {
    let deployment = Deployment::start().await;
    let owner = deployment.owner().await;
    let project = deployment.project_id();
    let other = owner
        .ok(
            Method::POST,
            &format!("/api/organizations/{}/projects/", deployment.organization_id()),
            Some(json!({"name": "Other"})),
        )
        .await;
    let other = other["id"].as_i64().expect("project id");
    let (_, cohort, _) = samples().into_iter().find(|(c, _, _)| *c == "cohorts").expect("cohort sample");
    let created = owner.ok(Method::POST, &format!("/api/projects/{project}/cohorts/"), Some(cohort)).await;
    let id = created["id"].as_i64().expect("id");

    for path in [
        format!("/api/projects/{project}/actions/{id}/"),
        format!("/api/projects/{other}/cohorts/{id}/"),
        format!("/api/projects/{project}/cohorts/not-a-number/"),
        format!("/api/projects/999/cohorts/{id}/"),
    ] {
        owner.refused(Method::GET, &path, None, StatusCode::NOT_FOUND, "not_found").await;
        owner
            .refused(Method::PATCH, &path, Some(json!({"name": "Taken"})), StatusCode::NOT_FOUND, "not_found")
            .await;
        owner.refused(Method::DELETE, &path, None, StatusCode::NOT_FOUND, "not_found").await;
    }
    let listed = owner.ok(Method::GET, &format!("/api/projects/{other}/cohorts/"), None).await;
    assert_eq!(listed["count"], 0, "projects do not share entities: {listed}");
    let kept = owner.ok(Method::GET, &format!("/api/projects/{project}/cohorts/{id}/"), None).await;
    assert_eq!(kept, created, "untouched by the calls through the wrong paths");
}

#[tokio::test]
async fn another_organization_cannot_read_or_change_entities() {
    let deployment = Deployment::start_with(Setup { open_signup: true, ..Setup::default() }).await;
    let owner = deployment.owner().await;
    let base = format!("/api/projects/{}/dashboards/", deployment.project_id());
    let created = owner.ok(Method::POST, &base, Some(json!({"name": "Ours"}))).await;
    let item = format!("{base}{}/", created["id"]);
    let (stranger, _) = deployment.sign_up("stranger@example.com").await;
    let stranger_key = stranger.with_key(&stranger.new_key(json!(["*"])).await);
    for caller in [&stranger, &stranger_key] {
        caller.refused(Method::GET, &base, None, StatusCode::NOT_FOUND, "not_found").await;
        caller
            .refused(Method::POST, &base, Some(json!({"name": "Theirs"})), StatusCode::NOT_FOUND, "not_found")
            .await;
        caller.refused(Method::GET, &item, None, StatusCode::NOT_FOUND, "not_found").await;
        caller
            .refused(
                Method::PATCH,
                &item,
                Some(json!({"name": "Theirs"})),
                StatusCode::NOT_FOUND,
                "not_found",
            )
            .await;
        caller.refused(Method::DELETE, &item, None, StatusCode::NOT_FOUND, "not_found").await;
    }
    let listed = owner.ok(Method::GET, &base, None).await;
    assert_eq!(listed["results"], json!([created]), "one dashboard, unchanged");
}

#[tokio::test]
async fn members_make_entities_and_a_read_only_key_changes_none() {
    let deployment = Deployment::start().await;
    let (_, member) = deployment.member("member@example.com", "member").await;
    let base = format!("/api/projects/{}/insights/", deployment.project_id());
    // Entities are the project's work: members make them too.
    let created = member.send(Method::POST, &base, Some(json!({"name": "Mine"}))).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    let item = format!("{base}{}/", created.body["id"]);
    let reader = member.with_key(&member.new_key(json!(["insight:read"])).await);
    reader.ok(Method::GET, &item, None).await;
    for (method, body) in [
        (Method::POST, Some(json!({"name": "x"}))),
        (Method::PATCH, Some(json!({"name": "x"}))),
        (Method::DELETE, None),
    ] {
        let path = if method == Method::POST { &base } else { &item };
        reader.refused(method, path, body, StatusCode::FORBIDDEN, "permission_denied").await;
    }
    assert_eq!(member.ok(Method::GET, &item, None).await["name"], "Mine");
}

#[tokio::test]
async fn dashboards_take_only_insights_of_their_project() {
    let deployment = Deployment::start().await;
    let owner = deployment.owner().await;
    let project = deployment.project_id();
    let other = owner
        .ok(
            Method::POST,
            &format!("/api/organizations/{}/projects/", deployment.organization_id()),
            Some(json!({"name": "Other"})),
        )
        .await;
    let other = other["id"].as_i64().expect("project id");
    let insight = owner
        .ok(Method::POST, &format!("/api/projects/{project}/insights/"), Some(json!({"name": "Ours"})))
        .await;
    let tiles = json!({"name": "Board", "tiles": [{"insight": insight["id"]}, {"text": {"body": "notes"}}]});
    let refused = owner
        .refused(
            Method::POST,
            &format!("/api/projects/{other}/dashboards/"),
            Some(tiles.clone()),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        )
        .await;
    assert!(
        refused["detail"].as_str().is_some_and(|d| d.contains("does not exist in this project")),
        "{refused}"
    );
    let board = owner.ok(Method::POST, &format!("/api/projects/{project}/dashboards/"), Some(tiles)).await;
    // A PATCH is checked as a whole: a tile of a missing insight is refused.
    let missing = json!({"tiles": [{"insight": 999_999}]});
    owner
        .refused(
            Method::PATCH,
            &format!("/api/projects/{project}/dashboards/{}/", board["id"]),
            Some(missing),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        )
        .await;
}

#[tokio::test]
async fn an_experiment_makes_its_flag_or_needs_a_multivariate_one() {
    let deployment = Deployment::start().await;
    let owner = deployment.owner().await;
    let project = deployment.project_id();
    let experiments = format!("/api/projects/{project}/experiments/");
    let flags = format!("/api/projects/{project}/feature_flags/");
    owner
        .ok(Method::POST, &experiments, Some(json!({"name": "Checkout", "feature_flag_key": "checkout"})))
        .await;
    let listed = owner.ok(Method::GET, &flags, None).await;
    let made = listed["results"].as_array().expect("flags").iter().find(|f| f["key"] == "checkout").cloned();
    let made = made.unwrap_or_else(|| panic!("no flag made: {listed}"));
    let variants = &made["filters"]["multivariate"]["variants"];
    assert_eq!(
        variants,
        &json!([{"key": "control", "rollout_percentage": 50}, {"key": "test", "rollout_percentage": 50}])
    );

    // An existing flag without variants cannot split users.
    owner
        .ok(
            Method::POST,
            &flags,
            Some(json!({"key": "plain", "filters": {"groups": [{"rollout_percentage": 100}]}})),
        )
        .await;
    owner
        .refused(
            Method::POST,
            &experiments,
            Some(json!({"name": "Plain", "feature_flag_key": "plain"})),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        )
        .await;
    // Variants the experiment asks for are checked as a flag's are.
    let uneven = json!({"name": "Uneven", "feature_flag_key": "uneven", "parameters": {"feature_flag_variants": [
        {"key": "control", "rollout_percentage": 70}, {"key": "test", "rollout_percentage": 70}]}});
    owner.refused(Method::POST, &experiments, Some(uneven), StatusCode::BAD_REQUEST, "invalid_request").await;
    // A key allowed experiments but not flags cannot have a flag made.
    let key = owner.with_key(&owner.new_key(json!(["experiment:write"])).await);
    key.refused(
        Method::POST,
        &experiments,
        Some(json!({"name": "Sneaky", "feature_flag_key": "sneaky"})),
        StatusCode::FORBIDDEN,
        "permission_denied",
    )
    .await;
    let keys: Vec<Value> = owner.ok(Method::GET, &flags, None).await["results"]
        .as_array()
        .expect("flags")
        .iter()
        .map(|f| f["key"].clone())
        .collect();
    assert_eq!(keys, [json!("checkout"), json!("plain")], "no flag for refused experiments");
    assert_eq!(owner.ok(Method::GET, &experiments, None).await["count"], 1);
}

#[tokio::test]
async fn static_cohorts_take_persons_by_uuid_or_distinct_id() {
    let deployment = Deployment::start().await;
    let owner = deployment.owner().await;
    let base = format!("/api/projects/{}/cohorts/", deployment.project_id());
    let ann = deployment.person(&["ann", "ann@example.com"], json!({"plan": "pro"})).await;
    let bob = deployment.person(&["bob"], json!({})).await;
    let chosen = owner.ok(Method::POST, &base, Some(json!({"name": "Chosen", "is_static": true}))).await;
    let id = chosen["id"].as_i64().expect("id");
    let add = format!("{base}{id}/add_persons_to_static_cohort/");
    let added = owner
        .ok(
            Method::PATCH,
            &add,
            Some(json!({"person_ids": [
                "ann", "ann@example.com", bob.to_string(), "nobody", "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b"]})),
        )
        .await;
    assert_eq!(added["count"], 2, "one entry per person; unknown distinct ids and uuids skipped: {added}");
    let members = owner.ok(Method::GET, &format!("{base}{id}/persons/"), None).await;
    let mut uuids: Vec<&str> =
        members["results"].as_array().expect("results").iter().filter_map(|m| m["uuid"].as_str()).collect();
    uuids.sort_unstable();
    let mut expected = [ann.to_string(), bob.to_string()];
    expected.sort_unstable();
    assert_eq!(uuids, expected);

    let (_, dynamic, _) = samples().into_iter().find(|(c, _, _)| *c == "cohorts").expect("cohort sample");
    let dynamic = owner.ok(Method::POST, &base, Some(dynamic)).await;
    owner
        .refused(
            Method::PATCH,
            &format!("{base}{}/add_persons_to_static_cohort/", dynamic["id"]),
            Some(json!({"person_ids": ["ann"]})),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        )
        .await;
}

#[tokio::test]
async fn changes_to_entities_are_audited_with_who_and_what() {
    let deployment = Deployment::start().await;
    let owner = deployment.owner().await;
    let owner_id = deployment.user_id(OWNER_EMAIL).await;
    let project = deployment.project_id();
    let base = format!("/api/projects/{project}/annotations/");
    let created = owner
        .ok(Method::POST, &base, Some(json!({"content": "launch", "date_marker": "2024-03-01T00:00:00Z"})))
        .await;
    let id = created["id"].as_i64().expect("id");
    owner.ok(Method::PATCH, &format!("{base}{id}/"), Some(json!({"content": "relaunch"}))).await;
    let reader = owner.with_key(&owner.new_key(json!(["annotation:read"])).await);
    reader
        .refused(Method::DELETE, &format!("{base}{id}/"), None, StatusCode::FORBIDDEN, "permission_denied")
        .await;
    owner.send(Method::DELETE, &format!("{base}{id}/"), None).await;

    let resource = id.to_string();
    for (action, status) in [("annotation.create", 201), ("annotation.update", 200)] {
        let entries = audit_entries(&deployment, action).await;
        assert_eq!(entries.len(), 1, "{action}: {entries:?}");
        let entry = &entries[0];
        assert_eq!(
            (
                entry["actor"].as_str(),
                entry["credential"].as_str(),
                entry["user_id"].as_i64(),
                entry["project_id"].as_i64(),
                entry["status"].as_u64(),
                entry["outcome"].as_str(),
            ),
            (Some(OWNER_EMAIL), Some("session"), Some(owner_id), Some(project), Some(status), Some("ok")),
            "{action}: {entry}"
        );
        assert_eq!(entry["resource"], json!(resource), "{action}: {entry}");
    }
    // The refused deletion is there too, with the key and the refusal.
    let deletions = audit_entries(&deployment, "annotation.delete").await;
    let outcomes: Vec<(&str, &str, u64)> = deletions
        .iter()
        .map(|e| {
            (
                e["credential"].as_str().unwrap_or_default(),
                e["outcome"].as_str().unwrap_or_default(),
                e["status"].as_u64().unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(outcomes, [("session", "ok", 204), ("api_key", "permission_denied", 403)], "newest first");
}

/// posthog-js gives anonymous visitors a UUIDv7 as distinct id, so a
/// distinct id that parses as a uuid is still a distinct id: its person is
/// what joins the cohort.
#[tokio::test]
async fn a_distinct_id_shaped_like_a_uuid_adds_its_person_to_a_static_cohort() {
    let deployment = Deployment::start().await;
    let owner = deployment.owner().await;
    let base = format!("/api/projects/{}/cohorts/", deployment.project_id());
    let anonymous_id = "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b";
    let person = deployment.person(&[anonymous_id], json!({})).await;
    let chosen = owner.ok(Method::POST, &base, Some(json!({"name": "Chosen", "is_static": true}))).await;
    let id = chosen["id"].as_i64().expect("id");
    owner
        .ok(
            Method::PATCH,
            &format!("{base}{id}/add_persons_to_static_cohort/"),
            Some(json!({"person_ids": [anonymous_id]})),
        )
        .await;
    let members = owner.ok(Method::GET, &format!("{base}{id}/persons/"), None).await;
    assert_eq!(members["results"], json!([{"uuid": person.to_string()}]), "{members}");
}
