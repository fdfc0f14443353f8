//! Feature flags: definitions refused unless evaluation can follow them,
//! evaluation over `/flags` and `/decide` for persons with stored and sent
//! properties, and the definitions SDKs poll for local evaluation.

use axum::http::{header, Method, StatusCode};
use serde_json::{json, Value};

use crate::harness::{json_request, Client, Deployment};

/// Creates a flag in project 1; returns it as the API answered.
async fn create_flag(deployment: &Deployment, api: &Client, flag: Value) -> Value {
    let path = format!("/api/projects/{}/feature_flags/", deployment.project_id());
    let answer = api.send(Method::POST, &path, Some(flag)).await;
    assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.body);
    answer.body
}

/// `POST /flags` for `distinct_id` with `extra` fields (person
/// properties, flag keys…); the answer must be 200.
async fn evaluate(deployment: &Deployment, distinct_id: &str, extra: Value) -> Value {
    let mut request = json!({"token": deployment.token(), "distinct_id": distinct_id});
    if let (Some(request), Some(extra)) = (request.as_object_mut(), extra.as_object()) {
        request.extend(extra.clone());
    }
    deployment.anonymous().ok(Method::POST, "/flags/?v=2", Some(request)).await
}

fn beta() -> Value {
    json!({"key": "beta", "name": "Beta for our own people", "filters": {
        "groups": [{"properties": [{"key": "email", "value": "@example.com", "operator": "icontains", "type": "person"}], "rollout_percentage": 100}],
        "payloads": {"true": "{\"color\": \"blue\"}"}}})
}

#[tokio::test]
async fn definitions_evaluation_could_not_follow_are_refused_with_the_reason() {
    let deployment = Deployment::start().await;
    let owner = deployment.owner().await;
    let path = format!("/api/projects/{}/feature_flags/", deployment.project_id());
    let two = |a: f64, b: f64| {
        json!({"groups": [{"rollout_percentage": 100}], "multivariate": {"variants": [
            {"key": "a", "rollout_percentage": a}, {"key": "b", "rollout_percentage": b}]}})
    };
    for (filters, reason) in [
        (json!({"groups": [{"rollout_percentage": 101}]}), "rollout_percentage 101 is not between 0 and 100"),
        (json!({"groups": [{}, {"rollout_percentage": -5}]}), "condition set 2"),
        (two(60.0, 60.0), "add up to 120, not 100"),
        (two(50.0, 40.0), "add up to 90, not 100"),
        (two(150.0, -50.0), "is not between 0 and 100"),
        (
            json!({"groups": [{"variant": "c"}], "multivariate": {"variants": [{"key": "c", "rollout_percentage": 100}, {"key": "c", "rollout_percentage": 0}]}}),
            "used twice",
        ),
        (json!({"groups": [{"variant": "missing"}]}), "not a variant of this flag"),
        (
            json!({"groups": [{"properties": [{"key": "age", "value": "old", "operator": "gt", "type": "person"}]}]}),
            "not a number",
        ),
        (
            json!({"groups": [{"properties": [{"key": "name", "value": "(", "operator": "regex", "type": "person"}]}]}),
            "invalid regex",
        ),
        (
            json!({"groups": [{"properties": [{"key": "x", "value": 1, "operator": "is_kind_of", "type": "person"}]}]}),
            "unknown operator",
        ),
        (
            json!({"groups": [{"properties": [{"key": "id", "value": "seven", "type": "cohort"}]}]}),
            "not a cohort id",
        ),
        (json!({"groups": "all of them"}), "filters"),
    ] {
        let flag = json!({"key": "refused", "filters": filters});
        let refused =
            owner.refused(Method::POST, &path, Some(flag), StatusCode::BAD_REQUEST, "invalid_request").await;
        let detail = refused["detail"].as_str().unwrap_or_default();
        assert!(detail.contains(reason), "{filters}: expected {reason:?} in {detail:?}");
    }
    for key in ["", "has space", "dots.are.not.allowed"] {
        let flag = json!({"key": key, "filters": {"groups": [{"rollout_percentage": 100}]}});
        owner.refused(Method::POST, &path, Some(flag), StatusCode::BAD_REQUEST, "invalid_request").await;
    }
    // Thirds written with two decimals are a whole.
    create_flag(
        &deployment,
        &owner,
        json!({"key": "thirds", "filters": {"groups": [{"rollout_percentage": 100}], "multivariate": {"variants": [
            {"key": "a", "rollout_percentage": 33.33}, {"key": "b", "rollout_percentage": 33.33}, {"key": "c", "rollout_percentage": 33.34}]}}}),
    )
    .await;
    let listed = owner.ok(Method::GET, &path, None).await;
    assert_eq!(listed["count"], 1, "only the valid flag is stored: {listed}");
}

#[tokio::test]
async fn flag_keys_are_unique_in_a_project_and_a_bad_change_keeps_the_flag() {
    let deployment = Deployment::start().await;
    let owner = deployment.owner().await;
    let path = format!("/api/projects/{}/feature_flags/", deployment.project_id());
    let flag = create_flag(&deployment, &owner, beta()).await;
    let created = json!({"key": "other", "filters": {"groups": [{"rollout_percentage": 10}]}});
    let other = create_flag(&deployment, &owner, created).await;
    owner.refused(Method::POST, &path, Some(beta()), StatusCode::CONFLICT, "conflict").await;
    // Renaming onto a taken key conflicts as creating does.
    let other_item = format!("{path}{}/", other["id"]);
    owner
        .refused(Method::PATCH, &other_item, Some(json!({"key": "beta"})), StatusCode::CONFLICT, "conflict")
        .await;
    let item = format!("{path}{}/", flag["id"]);
    let bad = json!({"filters": {"groups": [{"rollout_percentage": 150}]}});
    owner.refused(Method::PATCH, &item, Some(bad), StatusCode::BAD_REQUEST, "invalid_request").await;
    assert_eq!(owner.ok(Method::GET, &item, None).await, flag, "the refused change changed nothing");
    assert_eq!(owner.ok(Method::GET, &other_item, None).await, other);
    // A deleted flag's key is free again.
    assert_eq!(owner.send(Method::DELETE, &item, None).await.status, StatusCode::NO_CONTENT);
    create_flag(&deployment, &owner, beta()).await;
}

#[tokio::test]
async fn a_condition_on_a_person_property_sent_with_the_request_decides() {
    let deployment = Deployment::start().await;
    let owner = deployment.owner().await;
    let flag = create_flag(&deployment, &owner, beta()).await;
    assert_eq!(flag["active"], true, "flags are active unless switched off");

    let matching =
        evaluate(&deployment, "ada", json!({"person_properties": {"email": "ada@EXAMPLE.com"}})).await;
    let record = &matching["flags"]["beta"];
    assert_eq!(record["enabled"], true, "{matching}");
    assert_eq!(record["reason"]["code"], "condition_match");
    assert_eq!(record["reason"]["condition_index"], 0);
    assert_eq!(record["metadata"]["id"], flag["id"]);
    assert_eq!(record["metadata"]["payload"], "{\"color\": \"blue\"}");
    assert_eq!(record["metadata"]["description"], "Beta for our own people");
    assert_eq!(matching["featureFlags"]["beta"], true);
    assert_eq!(matching["featureFlagPayloads"]["beta"], "{\"color\": \"blue\"}");
    assert_eq!(matching["errorsWhileComputingFlags"], false);

    let other = evaluate(&deployment, "bob", json!({"person_properties": {"email": "bob@other.org"}})).await;
    assert_eq!(other["flags"]["beta"]["enabled"], false, "{other}");
    assert_eq!(other["flags"]["beta"]["reason"]["code"], "no_condition_match");
    assert_eq!(other["flags"]["beta"]["metadata"]["payload"], Value::Null, "no payload when off");
    assert_eq!(other["featureFlags"]["beta"], false);
    assert_eq!(other["featureFlagPayloads"], json!({}));
    // Without the property nothing matches.
    assert_eq!(evaluate(&deployment, "cat", json!({})).await["featureFlags"]["beta"], false);
}

#[tokio::test]
async fn stored_person_properties_decide_and_sent_ones_override_them() {
    let deployment = Deployment::start().await;
    let owner = deployment.owner().await;
    let enterprise = json!({"key": "enterprise", "filters": {"groups": [
        {"properties": [{"key": "plan", "value": ["enterprise"], "operator": "exact", "type": "person"}], "rollout_percentage": 100}]}});
    create_flag(&deployment, &owner, enterprise).await;
    deployment.person(&["ann", "ann-laptop"], json!({"plan": "enterprise"})).await;
    deployment.person(&["bob"], json!({"plan": "free"})).await;

    // Every distinct id of a person gets the person's answer.
    for (distinct_id, expected) in [("ann", true), ("ann-laptop", true), ("bob", false), ("nobody", false)] {
        let answer = evaluate(&deployment, distinct_id, json!({})).await;
        assert_eq!(answer["featureFlags"]["enterprise"], expected, "{distinct_id}: {answer}");
    }
    let downgraded = evaluate(&deployment, "ann", json!({"person_properties": {"plan": "free"}})).await;
    assert_eq!(downgraded["featureFlags"]["enterprise"], false, "the request's properties win: {downgraded}");
    let upgraded = evaluate(&deployment, "bob", json!({"person_properties": {"plan": "enterprise"}})).await;
    assert_eq!(upgraded["featureFlags"]["enterprise"], true, "{upgraded}");
}

#[tokio::test]
async fn cohorts_in_conditions_match_by_person_properties_or_static_membership() {
    let deployment = Deployment::start().await;
    let owner = deployment.owner().await;
    let cohorts = format!("/api/projects/{}/cohorts/", deployment.project_id());
    let germans = owner
        .ok(
            Method::POST,
            &cohorts,
            Some(json!({"name": "Germans", "filters": {"properties": {"type": "OR", "values": [
                {"type": "person", "key": "country", "value": "DE"}]}}})),
        )
        .await;
    let chosen = owner.ok(Method::POST, &cohorts, Some(json!({"name": "Chosen", "is_static": true}))).await;
    let in_cohort = |key: &str, cohort: &Value| json!({"key": key, "filters": {"groups": [{"properties": [{"key": "id", "value": cohort["id"], "type": "cohort"}], "rollout_percentage": 100}]}});
    create_flag(&deployment, &owner, in_cohort("for-germans", &germans)).await;
    create_flag(&deployment, &owner, in_cohort("for-the-chosen", &chosen)).await;
    deployment.person(&["ann"], json!({"country": "FR"})).await;
    owner
        .ok(
            Method::PATCH,
            &format!("{cohorts}{}/add_persons_to_static_cohort/", chosen["id"]),
            Some(json!({"person_ids": ["ann"]})),
        )
        .await;

    let ann = evaluate(&deployment, "ann", json!({})).await;
    assert_eq!(ann["featureFlags"], json!({"for-germans": false, "for-the-chosen": true}), "{ann}");
    let moved = evaluate(&deployment, "ann", json!({"person_properties": {"country": "DE"}})).await;
    assert_eq!(moved["featureFlags"]["for-germans"], true, "{moved}");
    let stranger = evaluate(&deployment, "zed", json!({"person_properties": {"country": "DE"}})).await;
    assert_eq!(stranger["featureFlags"], json!({"for-germans": true, "for-the-chosen": false}), "{stranger}");
}

#[tokio::test]
async fn variants_split_people_and_a_condition_can_pin_one() {
    let deployment = Deployment::start().await;
    let owner = deployment.owner().await;
    let variants =
        json!([{"key": "control", "rollout_percentage": 50}, {"key": "test", "rollout_percentage": 50}]);
    create_flag(
        &deployment,
        &owner,
        json!({"key": "checkout", "filters": {"groups": [
            {"properties": [{"key": "country", "value": ["DE"], "type": "person"}], "rollout_percentage": 100, "variant": "test"},
            {"properties": [], "rollout_percentage": 100}],
            "multivariate": {"variants": variants}, "payloads": {"test": {"price": 9}}}}),
    )
    .await;

    let mut seen = std::collections::BTreeMap::new();
    for i in 0..40 {
        let distinct_id = format!("user-{i}");
        let first = evaluate(&deployment, &distinct_id, json!({})).await;
        let again = evaluate(&deployment, &distinct_id, json!({})).await;
        let variant = first["featureFlags"]["checkout"].clone();
        assert_eq!(variant, again["featureFlags"]["checkout"], "{distinct_id}: the same answer every time");
        assert_eq!(first["flags"]["checkout"]["variant"], variant);
        assert_eq!(first["flags"]["checkout"]["reason"]["condition_index"], 1, "{first}");
        *seen.entry(variant.as_str().unwrap_or_default().to_string()).or_insert(0) += 1;
    }
    assert_eq!(seen.keys().collect::<Vec<_>>(), ["control", "test"], "both variants are served: {seen:?}");

    // The first condition set pins the variant for Germans, whatever their
    // bucket; a stored object payload goes out as JSON text.
    for i in 0..10 {
        let answer =
            evaluate(&deployment, &format!("user-{i}"), json!({"person_properties": {"country": "DE"}}))
                .await;
        assert_eq!(answer["featureFlags"]["checkout"], "test", "{answer}");
        assert_eq!(answer["flags"]["checkout"]["reason"]["condition_index"], 0);
        assert_eq!(answer["featureFlagPayloads"]["checkout"], "{\"price\":9}");
    }
}

#[tokio::test]
async fn switched_off_flags_are_not_served_and_a_request_may_name_the_flags_it_wants() {
    let deployment = Deployment::start().await;
    let owner = deployment.owner().await;
    let everyone = |key: &str| json!({"key": key, "filters": {"groups": [{"rollout_percentage": 100}]}});
    create_flag(&deployment, &owner, everyone("one")).await;
    create_flag(&deployment, &owner, everyone("two")).await;
    let off = create_flag(&deployment, &owner, everyone("three")).await;
    owner
        .ok(
            Method::PATCH,
            &format!("/api/projects/{}/feature_flags/{}/", deployment.project_id(), off["id"]),
            Some(json!({"active": false})),
        )
        .await;

    let all = evaluate(&deployment, "ada", json!({})).await;
    assert_eq!(all["featureFlags"], json!({"one": true, "two": true}), "{all}");
    let some =
        evaluate(&deployment, "ada", json!({"flag_keys_to_evaluate": ["two", "three", "missing"]})).await;
    assert_eq!(some["featureFlags"], json!({"two": true}), "{some}");
    assert_eq!(some["flags"].as_object().map(|f| f.len()), Some(1));
}

#[tokio::test]
async fn decide_answers_in_the_legacy_shape() {
    let deployment = Deployment::start().await;
    let owner = deployment.owner().await;
    create_flag(&deployment, &owner, beta()).await;
    // posthog-python names the token `api_key`.
    let request = json!({"api_key": deployment.token(), "distinct_id": 42, "person_properties": {"email": "a@example.com"}});
    let answer = deployment.anonymous().ok(Method::POST, "/decide/?v=3", Some(request)).await;
    assert_eq!(answer["featureFlags"], json!({"beta": true}), "{answer}");
    assert_eq!(answer["featureFlagPayloads"], json!({"beta": "{\"color\": \"blue\"}"}));
    assert_eq!(answer["errorsWhileComputingFlags"], false);
    assert!(answer.get("flags").is_none(), "the legacy answer has no per-flag records: {answer}");
}

#[tokio::test]
async fn flags_requests_without_a_known_token_or_a_distinct_id_are_refused() {
    let deployment = Deployment::start().await;
    let anonymous = deployment.anonymous();
    let token = deployment.token();
    for (body, status, code) in [
        (json!({"distinct_id": "ada"}), StatusCode::UNAUTHORIZED, "missing_token"),
        (
            json!({"token": "phc_not_a_project", "distinct_id": "ada"}),
            StatusCode::UNAUTHORIZED,
            "unknown_token",
        ),
        (json!({"token": token}), StatusCode::BAD_REQUEST, "missing_distinct_id"),
        (json!({"token": token, "distinct_id": ""}), StatusCode::BAD_REQUEST, "missing_distinct_id"),
        (json!({"token": token, "distinct_id": null}), StatusCode::BAD_REQUEST, "missing_distinct_id"),
        (json!({"token": token, "distinct_id": ["a"]}), StatusCode::BAD_REQUEST, "missing_distinct_id"),
    ] {
        for path in ["/flags/?v=2", "/decide/?v=3"] {
            anonymous.refused(Method::POST, path, Some(body.clone()), status, code).await;
        }
    }
    // A personal API key is not a project token.
    let owner = deployment.owner().await;
    let key = owner.new_key(json!(["*"])).await;
    anonymous
        .refused(
            Method::POST,
            "/flags/?v=2",
            Some(json!({"token": key, "distinct_id": "ada"})),
            StatusCode::UNAUTHORIZED,
            "unknown_token",
        )
        .await;
}

#[tokio::test]
async fn local_evaluation_definitions_carry_a_version_that_changes_with_the_flags() {
    let deployment = Deployment::start().await;
    let owner = deployment.owner().await;
    let flag = create_flag(&deployment, &owner, beta()).await;
    let reader = owner.with_key(&owner.new_key(json!(["feature_flag:read"])).await);
    let by_project = format!("/api/projects/{}/feature_flags/local_evaluation/", deployment.project_id());
    let by_token = format!("/flags/definitions?token={}", deployment.token());

    let first = reader.send(Method::GET, &by_project, None).await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.body);
    let definitions = &first.body["flags"];
    assert_eq!(definitions.as_array().map(Vec::len), Some(1), "{}", first.body);
    assert_eq!(
        (&definitions[0]["key"], &definitions[0]["active"], &definitions[0]["team_id"]),
        (&json!("beta"), &json!(true), &json!(deployment.project_id()))
    );
    assert_eq!(definitions[0]["filters"]["payloads"]["true"], "{\"color\": \"blue\"}");
    let tag = first.headers.get(header::ETAG).cloned().expect("an ETag");
    let same = reader.send(Method::GET, &by_token, None).await;
    assert_eq!(
        (same.status, same.headers.get(header::ETAG)),
        (StatusCode::OK, Some(&tag)),
        "both routes agree"
    );

    let mut unchanged = json_request(Method::GET, &by_token, None);
    unchanged.headers_mut().insert(header::IF_NONE_MATCH, tag.clone());
    assert_eq!(reader.request(unchanged).await.status, StatusCode::NOT_MODIFIED);

    owner
        .ok(
            Method::PATCH,
            &format!("/api/projects/{}/feature_flags/{}/", deployment.project_id(), flag["id"]),
            Some(json!({"active": false})),
        )
        .await;
    let mut changed = json_request(Method::GET, &by_token, None);
    changed.headers_mut().insert(header::IF_NONE_MATCH, tag.clone());
    let changed = reader.request(changed).await;
    assert_eq!(changed.status, StatusCode::OK, "a changed flag is a new version");
    assert_ne!(changed.headers.get(header::ETAG), Some(&tag));
    assert_eq!(changed.body["flags"][0]["active"], false, "{}", changed.body);

    // Definitions need a credential that may read flags.
    deployment
        .anonymous()
        .refused(Method::GET, &by_token, None, StatusCode::UNAUTHORIZED, "not_authenticated")
        .await;
    let cohorts_only = owner.with_key(&owner.new_key(json!(["cohort:read"])).await);
    cohorts_only.refused(Method::GET, &by_project, None, StatusCode::FORBIDDEN, "permission_denied").await;
    reader.refused(Method::GET, "/flags/definitions", None, StatusCode::UNAUTHORIZED, "missing_token").await;
    reader
        .refused(Method::GET, "/flags/definitions?token=phc_nope", None, StatusCode::NOT_FOUND, "not_found")
        .await;
}

/// A flag may name a cohort that is deleted later; it must then match
/// nobody through it, not whatever cohort is created next.
#[tokio::test]
async fn a_flag_on_a_deleted_cohort_does_not_pick_up_the_next_cohort_created() {
    let deployment = Deployment::start().await;
    let owner = deployment.owner().await;
    let project = deployment.project_id();
    let everyone = json!({"key": "testers", "filters": {"groups": [{"rollout_percentage": 100}]}});
    let flag = create_flag(&deployment, &owner, everyone).await;
    let cohorts = format!("/api/projects/{project}/cohorts/");
    let testers = owner.ok(Method::POST, &cohorts, Some(json!({"name": "Testers", "is_static": true}))).await;
    let in_testers = json!({"filters": {"groups": [
        {"properties": [{"key": "id", "value": testers["id"], "type": "cohort"}], "rollout_percentage": 100}]}});
    owner
        .ok(
            Method::PATCH,
            &format!("/api/projects/{project}/feature_flags/{}/", flag["id"]),
            Some(in_testers),
        )
        .await;
    let deleted = owner.send(Method::DELETE, &format!("{cohorts}{}/", testers["id"]), None).await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT);

    let french = json!({"name": "French", "filters": {"properties": {"type": "AND", "values": [
        {"type": "person", "key": "country", "value": "FR"}]}}});
    let french = owner.ok(Method::POST, &cohorts, Some(french)).await;
    let answer = evaluate(&deployment, "zoe", json!({"person_properties": {"country": "FR"}})).await;
    assert_eq!(answer["featureFlags"]["testers"], false, "served through the new cohort: {answer}");
    assert_ne!(french["id"], testers["id"], "a deleted cohort's id is not given again");
}
